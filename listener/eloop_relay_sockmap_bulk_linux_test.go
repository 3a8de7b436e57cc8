//go:build linux

package listener

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestSockmapDroppedBytesResetBoth: when the kernel loses bytes of a paused direction (a
// segment judged while its socket leaves the watch map, see pause), the direction can never
// resume; the connection must end with a reset on both sides and an error for its
// observer, not hang until an idle timeout that may be off. The loss is made on the loop:
// the direction is told the kernel took 1,000 bytes more than it did, then paused.
func TestSockmapDroppedBytesResetBoth(t *testing.T) {
	backendErr := make(chan error, 1)
	watch := func(c *net.TCPConn) {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, c)
		backendErr <- err
	}
	obs := resObserver{closed: make(chan Traffic, 1)}
	s, el, addr := smProxy(t, -1, watch, func(s *Server) { s.Observer = obs })
	c := resDial(t, addr)
	resEventually(t, "the connection to be promoted", func() bool { return el.SockmapStats().InKernel == 1 })
	if _, err := c.Write([]byte("bytes through the kernel")); err != nil {
		t.Fatal(err)
	}
	lose := func(l *loop) {
		for lc := l.conns.head; lc != nil; lc = lc.next {
			if promoted(lc) && lc.smap.up.mode == inKernel {
				lc.smap.up.offset += 1000
				l.relay.(sockmapRelay).pause(l, lc, &lc.up)
				return
			}
		}
	}
	el.mu.Lock()
	loops := el.loops
	el.mu.Unlock()
	for _, l := range loops {
		if !l.call(lose) {
			t.Fatal("an event loop has ended")
		}
	}
	if el.SockmapStats().Paused != 1 {
		t.Fatalf("%d directions paused, want 1", el.SockmapStats().Paused)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read %v, want a reset", err)
	}
	if err := <-backendErr; !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("backend read %v, want a reset", err)
	}
	select {
	case tr := <-obs.closed:
		if !errors.Is(tr.Err, errKernelDropped) {
			t.Errorf("the connection ended with %v, want %v", tr.Err, errKernelDropped)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the connection did not end")
	}
	resEventually(t, "no active connection", func() bool { return s.ActiveConns() == 0 })
}

// TestSockmapBulkStaysOnRelay: a connection that streams bulk past the promotion age stays on
// the relay, where TCP flow control holds its sender back (the kernel's redirects would queue
// what it sends), while a request/response connection of the same age moves into the kernel.
func TestSockmapBulkStaysOnRelay(t *testing.T) {
	const after = 50 * time.Millisecond
	sink := func(c *net.TCPConn) {
		if _, err := io.Copy(io.Discard, c); err == nil {
			c.CloseWrite()
		}
	}
	obs := resObserver{closed: make(chan Traffic, 2)}
	_, el, addr := smProxy(t, after, sink, func(s *Server) { s.Observer = obs })
	bulk := resDial(t, addr)
	chunk := make([]byte, 1<<20)
	var sent int64
	for start := time.Now(); time.Since(start) < 6*after || sent < 64<<20; sent += int64(len(chunk)) {
		bulk.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := bulk.Write(chunk); err != nil {
			t.Fatalf("after %d bytes: %v", sent, err)
		}
	}
	if n := el.SockmapStats().Promoted; n != 0 {
		t.Errorf("%d connections promoted while one streamed bulk, want none", n)
	}
	if err := bulk.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := readExactly(bulk, nil); err != nil {
		t.Fatal(err)
	}
	if tr := <-obs.closed; tr.Up != sent || tr.Err != nil {
		t.Errorf("traffic %+v, want %d bytes up and no error", tr, sent)
	}
	// A sink never answers: the promotion is seen in the counts, one request a tick.
	talk := resDial(t, addr)
	tick := time.NewTicker(after / 5)
	defer tick.Stop()
	for start := time.Now(); el.SockmapStats().InKernel == 0; <-tick.C {
		if time.Since(start) > 15*time.Second {
			t.Fatal("the request/response connection was not promoted")
		}
		if _, err := talk.Write([]byte("request")); err != nil {
			t.Fatal(err)
		}
	}
	talk.Close()
}

// TestSockmapAtOnceMovesBulkToo: with every connection moved at once (--sockmap-after 0, for
// measuring), a client that streams from its first moment moves into the kernel as well.
func TestSockmapAtOnceMovesBulkToo(t *testing.T) {
	sink := func(c *net.TCPConn) {
		if _, err := io.Copy(io.Discard, c); err == nil {
			c.CloseWrite()
		}
	}
	obs := resObserver{closed: make(chan Traffic, 1)}
	_, el, addr := smProxy(t, -1, sink, func(s *Server) { s.Observer = obs })
	c := resDial(t, addr)
	chunk := make([]byte, 1<<20)
	var sent int64
	for start := time.Now(); el.SockmapStats().Promoted == 0; sent += int64(len(chunk)) {
		if time.Since(start) > 15*time.Second {
			t.Fatal("a streaming connection was not moved at once")
		}
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := readExactly(c, nil); err != nil {
		t.Fatal(err)
	}
	if tr := <-obs.closed; tr.Up != sent || tr.Err != nil {
		t.Errorf("traffic %+v, want %d bytes up and no error", tr, sent)
	}
}
