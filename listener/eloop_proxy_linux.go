//go:build linux

package listener

import (
	"bufio"
	"bytes"
	"fmt"
	"os"

	proxyproto "github.com/pires/go-proxyproto"
	"golang.org/x/sys/unix"

	"github.com/fulcrumlb/fulcrum/listener/internal/poll"
)

// The event-loop side of ProxyProtocol: the inbound header is read from the client without
// blocking, a piece at a time, until it is whole (or cannot be one), then parsed by the same
// library and judged by the same rules as in the goroutine plane (proxyproto.go).

// awaitHeader starts waiting for c's inbound header, bounded by HeaderTimeout.
func (l *loop) awaitHeader(c *loopConn) {
	c.state = stateHeader
	l.timers.set(c, l.now.Add(c.srv.cfg.ProxyProtocol.headerTimeout()))
}

// readHeader reads what the client has sent, up to proxyHeaderBuf bytes in all, and judges
// the header once it is complete.
func (l *loop) readHeader(c *loopConn) {
	for len(c.hdr) < proxyHeaderBuf && !c.hdrEOF {
		n, err := poll.Read(c.cfd, l.buf[:proxyHeaderBuf-len(c.hdr)])
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			l.refuseHeader(c, l.headerReadError(c, os.NewSyscallError("read", err)))
			return
		}
		if n == 0 {
			c.hdrEOF = true
			break
		}
		c.hdr = append(c.hdr, l.buf[:n]...)
	}
	if c.hdrEOF || len(c.hdr) >= proxyHeaderBuf || headerComplete(c.hdr) {
		l.judgeHeader(c, false)
	}
}

func (l *loop) headerReadError(c *loopConn, err error) error {
	if c.srv.cfg.ProxyProtocol.trusts(c.info.Client.Addr()) {
		return fmt.Errorf("PROXY header from %s: %w", c.info.Client, err)
	}
	return fmt.Errorf("read from client: %w", err)
}

// judgeHeader decides on what has been read (all of it, or what came before HeaderTimeout):
// a trusted peer's header moves the client's address, an untrusted peer's plain bytes pass,
// and everything else refuses the client. Then the backend is picked.
func (l *loop) judgeHeader(c *loopConn, timedOut bool) {
	pp := &c.srv.cfg.ProxyProtocol
	rest := c.hdr
	var h *proxyproto.Header
	var err error = os.ErrDeadlineExceeded
	if !timedOut {
		br := bufio.NewReaderSize(bytes.NewReader(c.hdr), proxyHeaderBuf)
		h, err = proxyproto.Read(br)
		rest, _ = br.Peek(br.Buffered()) // cannot fail: the bytes are buffered
	}
	c.hdr = nil
	l.timers.clear(c)
	if err := pp.judge(h, err, &c.info); err != nil {
		l.refuseHeader(c, err)
		return
	}
	c.rest = rest
	l.admitThenConnect(c)
}

func (l *loop) refuseHeader(c *loopConn, err error) {
	c.srv.book.headerRefused(c.info.Client, err)
	l.finish(c, err, false)
}

// headerComplete reports whether b holds as much as the parser will ask for: a whole header,
// or enough to know there is none. Short of that, the parser would wait for more.
func headerComplete(b []byte) bool {
	switch {
	case len(b) == 0:
		return false
	case b[0] != proxyproto.SIGV1[0] && b[0] != proxyproto.SIGV2[0]:
		return true // no signature can start here
	case bytes.HasPrefix(proxyproto.SIGV1, b) || bytes.HasPrefix(proxyproto.SIGV2, b):
		return false // a prefix of a signature: wait for the rest
	case bytes.HasPrefix(b, proxyproto.SIGV1):
		return bytes.IndexByte(b, '\n') >= 0 || len(b) >= 108 // v1 is one line, at most 107 bytes
	case bytes.HasPrefix(b, proxyproto.SIGV2):
		return len(b) >= 16 && len(b) >= 16+int(b[14])<<8|int(b[15])
	}
	return true // a signature's first byte, then something else
}

// handoff is what the relay gets with c's established pair: as its prefix, what must reach
// the backend before any relayed byte, the outbound PROXY header, then the bytes read past an
// inbound one. Those bytes are client bytes like any other: the Meter hears them and
// Traffic.Up counts them; the header is not.
func (c *loopConn) handoff(backendEv uint32) (handoff, error) {
	h := handoff{clientEv: c.seen, backendEv: backendEv}
	if ph := c.srv.cfg.ProxyProtocol.outbound(&c.info); ph != nil {
		b, err := ph.Format()
		if err != nil {
			return handoff{}, fmt.Errorf("format proxy header for %s: %w", c.backend.Key(), err)
		}
		h.prefix = b
	}
	if len(c.rest) > 0 {
		h.prefix = append(h.prefix, c.rest...)
		h.clientBytes = len(c.rest)
		c.rest = nil
	}
	return h, nil
}
