package listener

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

var smallBufs = sync.Pool{New: func() any { b := make([]byte, smallRead); return &b }}

// pump moves one direction of a connection. It waits for data holding nothing (no buffer, no
// splice pipe), so an idle connection costs only its two sockets. Then:
//   - small messages are read once into a pooled buffer and written: two syscalls, where
//     splice would need four (two splices, plus the pipe's bookkeeping) for the same bytes;
//   - when a read fills the buffer, the bytes queued behind it are spliced, zero copy, for as
//     long as the queue stays at least smallRead deep.
type pump struct {
	dst, src *net.TCPConn
	rc       syscall.RawConn
	lr       io.LimitedReader
	bulk     bool

	// Results of the callbacks below, which run inside rc.Read and rc.Control. The method
	// values are made once so that a step allocates nothing.
	buf     *[]byte // held from a successful read until its write is done
	n       int
	err     error
	queued  int
	readFn  func(fd uintptr) bool
	queueFn func(fd uintptr)
}

func newPump(dst, src *net.TCPConn) (*pump, error) {
	rc, err := src.SyscallConn()
	if err != nil {
		return nil, err
	}
	p := &pump{dst: dst, src: src, rc: rc, lr: io.LimitedReader{R: src}}
	p.readFn = p.readReady
	p.queueFn = p.readQueue
	return p, nil
}

// step moves what src has ready, at most chunk bytes. eof reports src's FIN.
func (p *pump) step(chunk int64) (n int64, eof bool, err error) {
	if p.bulk {
		if err := p.rc.Control(p.queueFn); err != nil {
			return 0, false, err
		}
		if p.queued >= smallRead {
			// Every byte is queued, so splice never waits on src (and holds its pipe only
			// while it moves them); it cannot meet the FIN before them.
			p.lr.N = min(int64(p.queued), chunk)
			n, err := p.dst.ReadFrom(&p.lr)
			return n, false, err
		}
		p.bulk = false
	}
	return p.copySmall()
}

func (p *pump) copySmall() (int64, bool, error) {
	if err := p.rc.Read(p.readFn); err != nil {
		return 0, false, err
	}
	if p.err != nil {
		return 0, false, os.NewSyscallError("read", p.err)
	}
	if p.n == 0 {
		return 0, true, nil
	}
	w, err := p.dst.Write((*p.buf)[:p.n])
	p.bulk = p.n == smallRead
	smallBufs.Put(p.buf)
	p.buf = nil
	return int64(w), false, err
}

// readReady is rc.Read's callback: a non-blocking read into a pooled buffer, which goes back to
// the pool at once when there is nothing to read (Read then waits in the poller).
func (p *pump) readReady(fd uintptr) bool {
	p.buf = smallBufs.Get().(*[]byte)
	n, err := syscall.Read(int(fd), *p.buf)
	for err == syscall.EINTR {
		n, err = syscall.Read(int(fd), *p.buf)
	}
	if err == syscall.EAGAIN || err != nil || n == 0 {
		smallBufs.Put(p.buf)
		p.buf = nil
		if err == syscall.EAGAIN {
			return false
		}
	}
	p.n, p.err = max(n, 0), err
	return true
}

func (p *pump) readQueue(fd uintptr) { p.queued = inQueue(fd) }

// inQueue is the number of bytes in a socket's receive queue (SIOCINQ); 0 if unknown.
func inQueue(fd uintptr) int {
	var n int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, siocinq, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return 0
	}
	return int(n)
}

// siocinq is SIOCINQ (= FIONREAD), which package syscall does not name.
const siocinq = 0x541B
