//go:build linux

package listener

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// ppSeen is what a PROXY-reading backend found at the start of one connection.
type ppSeen struct {
	h   *proxyproto.Header
	err error
}

// ppHeaderEcho is a backend that reads a PROXY header, reports it, and then echoes every
// byte after it until the client's FIN. A connection whose first bytes are not a header
// (a client byte overtook the header) is reset.
func ppHeaderEcho(seen chan<- ppSeen) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		h, err := proxyproto.Read(br)
		seen <- ppSeen{h, err}
		if err != nil {
			c.SetLinger(0)
			c.Close()
			return
		}
		io.Copy(c, br)
		c.CloseWrite()
	}
}

// ppEchoPromoted sends early (at once, in the connection's first write, after prefix, which
// is not echoed: an inbound PROXY header), then size random
// bytes in 16 KiB pieces, each read back before the next: half of them, then one-byte pieces
// until the connection is older than age (the proxy moves it into the kernel at one of
// those), then the rest. It checks the SHA-256 of everything that came back, and returns how
// many bytes it sent.
func ppEchoPromoted(c *net.TCPConn, prefix, early []byte, size int, age time.Duration) (int64, error) {
	start := time.Now()
	c.SetDeadline(start.Add(60 * time.Second))
	data := make([]byte, size)
	rand.Read(data)
	sent, got := sha256.New(), sha256.New()
	var n int64
	piece := func(b []byte) error {
		sent.Write(b)
		n += int64(len(b))
		if _, err := c.Write(append(prefix, b...)); err != nil {
			return err
		}
		prefix = nil
		_, err := io.CopyN(got, c, int64(len(b)))
		return err
	}
	if err := piece(early); err != nil {
		return n, fmt.Errorf("early data: %w", err)
	}
	for off := 0; off < size; off += 16 << 10 {
		for off == size/2 && time.Since(start) < age {
			if err := piece([]byte{'.'}); err != nil {
				return n, err
			}
		}
		if err := piece(data[off : off+16<<10]); err != nil {
			return n, err
		}
	}
	if err := c.CloseWrite(); err != nil {
		return n, err
	}
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		return n, fmt.Errorf("after the echo: %d more bytes, %v", len(rest), err)
	}
	if !bytes.Equal(sent.Sum(nil), got.Sum(nil)) {
		return n, errors.New("echoed bytes differ from those sent")
	}
	return n, nil
}

// TestSockmapProxyProtocolHeaderFirst: with the outbound PROXY header on, every backend
// connection opens with the header, naming the client, and then carries exactly the
// client's bytes (SHA-256 of 1 MiB echoed through the kernel), whether the connection moves
// into the kernel at once (the header, and the client's early bytes, must be written before
// the sockets enter the maps) or at the default age, mid-stream. With an inbound header
// accepted too, the bytes read past it go to the backend after the outbound header, before
// the promotion. Counts stay exact: the header is not a client byte.
func TestSockmapProxyProtocolHeaderFirst(t *testing.T) {
	const conns, size = 10, 1 << 20
	for _, age := range []struct {
		name  string
		after time.Duration
	}{{"at once", -1}, {"default age", DefaultSockmapAfter}} {
		for _, v := range []byte{1, 2} {
			for _, inbound := range []bool{false, true} {
				name := fmt.Sprintf("%s/v%d", age.name, v)
				if inbound {
					name += "/accepting an inbound header"
				}
				t.Run(name, func(t *testing.T) {
					testSockmapProxyHeaderFirst(t, age.after, v, inbound, conns, size)
				})
			}
		}
	}
}

func testSockmapProxyHeaderFirst(t *testing.T, after time.Duration, v byte, inbound bool, conns, size int) {
	seen := make(chan ppSeen, conns)
	obs := resObserver{closed: make(chan Traffic, conns)}
	pp := ProxyProtocol{Send: v}
	if inbound {
		pp.Accept = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	_, el, addr := smProxy(t, after, ppHeaderEcho(seen), func(s *Server) {
		s.ProxyProtocol, s.Observer = pp, obs
	})
	var wg sync.WaitGroup
	var total atomic.Int64                      // client bytes sent, after any inbound header
	clients := make(chan netip.AddrPort, conns) // the source each backend header must name
	for i := range conns {
		c := dialTCP(t, addr)
		early := []byte(fmt.Sprintf("early bytes of connection %d\n", i))
		src := c.LocalAddr().(*net.TCPAddr).AddrPort()
		var hdr []byte
		if inbound { // a balancer in front names another client; its request in the same write
			src = netip.MustParseAddrPort(fmt.Sprintf("192.0.2.%d:%d", i+1, 40000+i))
			hdr = inboundHeader(t, 1, src.String(), "198.51.100.1:443")
		}
		clients <- src
		wg.Go(func() {
			n, err := ppEchoPromoted(c, hdr, early, size, 2*max(after, 0))
			if err != nil {
				t.Errorf("connection %d: %v", i, err)
			}
			total.Add(n)
		})
	}
	wg.Wait()
	close(clients)
	want := map[netip.AddrPort]bool{}
	for src := range clients {
		want[unmapped(src)] = true
	}
	for range conns {
		s := <-seen
		if s.err != nil {
			t.Fatalf("the backend did not find a PROXY header first: %v", s.err)
		}
		if s.h.Version != v || !s.h.Command.IsProxy() {
			t.Errorf("header version %d command %v, want v%d PROXY", s.h.Version, s.h.Command, v)
		}
		hs, _, ok := s.h.TCPAddrs()
		if !ok || !want[unmapped(hs.AddrPort())] {
			t.Errorf("header source %v names no client of this test (%v)", hs, want)
		}
		delete(want, unmapped(hs.AddrPort()))
	}
	var up, down int64 // the client's bytes exactly: neither header is one
	for range conns {
		tr := <-obs.closed
		if tr.Err != nil {
			t.Errorf("connection ended with %v", tr.Err)
		}
		up, down = up+tr.Up, down+tr.Down
	}
	if up != total.Load() || down != total.Load() {
		t.Errorf("traffic %d up, %d down; want the %d bytes the clients sent, both ways", up, down, total.Load())
	}
	if st := el.SockmapStats(); st.Promoted != conns {
		t.Errorf("%d connections promoted, want all %d", st.Promoted, conns)
	}
}
