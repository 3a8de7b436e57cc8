//go:build !linux

package listener

import (
	"io"
	"net"
)

// pump moves one direction of a connection with ReadFrom, chunk by chunk, where the Linux
// splice threshold does not apply.
type pump struct {
	dst *net.TCPConn
	lr  io.LimitedReader
}

func newPump(dst, src *net.TCPConn) (*pump, error) {
	return &pump{dst: dst, lr: io.LimitedReader{R: src}}, nil
}

// step moves at most chunk bytes; eof reports src's FIN.
func (p *pump) step(chunk int64) (int64, bool, error) {
	p.lr.N = chunk
	n, err := p.dst.ReadFrom(&p.lr)
	return n, err == nil && p.lr.N > 0, err
}
