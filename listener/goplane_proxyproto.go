package listener

import (
	"bufio"
	"fmt"
	"net"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// The goroutine plane's side of ProxyProtocol (proxyproto.go): the inbound header is read with
// a deadline from the client's own goroutine, and the outbound prefix written before the
// DataPath joins the sockets.

// readProxyHeader applies the inbound half (when Accept is set): it reads the client's first bytes,
// moves info.Client and info.Local to the addresses a trusted header names (keeping the TCP peer
// in info.Peer), and returns the client bytes read past the header, which belong to the backend.
// The client socket is left unwrapped, with no read deadline.
func (s *goPlane) readProxyHeader(c *net.TCPConn, info *ConnInfo) ([]byte, error) {
	rest, err := s.ProxyProtocol.read(c, info)
	if err != nil {
		s.book.headerRefused(info.Client, err)
	}
	return rest, err
}

func (pp *ProxyProtocol) read(c *net.TCPConn, info *ConnInfo) ([]byte, error) {
	if err := c.SetReadDeadline(time.Now().Add(pp.headerTimeout())); err != nil {
		return nil, fmt.Errorf("PROXY header: %w", err)
	}
	br := bufio.NewReaderSize(c, proxyHeaderBuf)
	h, err := proxyproto.Read(br)
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("PROXY header: %w", err)
	}
	rest, _ := br.Peek(br.Buffered()) // cannot fail: the bytes are buffered
	if err := pp.judge(h, err, info); err != nil {
		return nil, err
	}
	return rest, nil
}

// sendProxyPrefix writes to a freshly dialed backend what must precede the spliced stream: the
// outbound PROXY header (when Send is set) and the client bytes read past the inbound one.
func (s *goPlane) sendProxyPrefix(backend *net.TCPConn, info *ConnInfo, rest []byte) error {
	if h := s.ProxyProtocol.outbound(info); h != nil {
		if _, err := h.WriteTo(backend); err != nil {
			return fmt.Errorf("write proxy header to %s: %w", backend.RemoteAddr(), err)
		}
	}
	if len(rest) > 0 {
		if _, err := backend.Write(rest); err != nil {
			return fmt.Errorf("write to %s: %w", backend.RemoteAddr(), err)
		}
	}
	return nil
}

// joinWithPrefix sends the PROXY prefix, then hands the raw sockets to the DataPath. The bytes
// of rest are client bytes like any other: the Meter hears them and Traffic.Up counts them.
func (s *goPlane) joinWithPrefix(client, backend *net.TCPConn, info *ConnInfo, rest []byte, m Meter) Traffic {
	if err := s.sendProxyPrefix(backend, info, rest); err != nil {
		abort(client, backend)
		return Traffic{Err: err}
	}
	if m != nil && len(rest) > 0 {
		m.Moved(true, int64(len(rest)))
	}
	t := s.path.Join(client, backend, m)
	t.Up += int64(len(rest))
	return t
}
