//go:build linux

package listener

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// smProxy serves a Server on sockmap loops of its own (promotion age after; negative: at
// once) in front of one backend running handle. Cleanup shuts it down, then checks that the
// kernel holds no connection and its maps no socket, and stops the loops.
func smProxy(t *testing.T, after time.Duration, handle func(*net.TCPConn), set func(*Server)) (*Server, *EventLoops, string) {
	t.Helper()
	requireSockmap(t)
	el, err := NewSockmapLoops(2, SockmapConfig{After: after, MaxConns: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(el.Stop)
	t.Cleanup(func() { assertKernelEmpty(t, el) })
	s := &Server{Picker: resPool(t, resBackend(t, handle)), ConnectTimeout: 5 * time.Second, Logger: quiet,
		DataPlane: PlaneSockmap, Loops: el}
	if set != nil {
		set(s)
	}
	return s, el, serveLoopback(t, s, s.Picker, s.Stats())
}

// assertKernelEmpty waits for the kernel's count and maps to empty as connections end.
func assertKernelEmpty(t *testing.T, el *EventLoops) {
	t.Helper()
	resEventually(t, "the kernel maps to empty", func() bool { st := el.SockmapStats(); return st.InKernel == 0 && st.MapEntries == 0 })
}

// smEcho is an echo backend that passes the client's FIN on.
func smEcho(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

// TestSockmapEchoesPromotedMidStream: 200 connections each echo 1 MiB both ways and are moved
// into the kernel while bytes flow; every byte comes back in order (SHA-256), each
// connection's counts are exact, and the kernel is empty afterwards.
func TestSockmapEchoesPromotedMidStream(t *testing.T) {
	const conns, size = 200, 1 << 20
	const after = 20 * time.Millisecond
	obs := resObserver{closed: make(chan Traffic, conns)}
	s, el, addr := smProxy(t, after, smEcho, func(s *Server) { s.Observer = obs })
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := echoPromoted(addr, size, 2*after); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for range conns {
		tr := <-obs.closed
		if tr.Up != size || tr.Down != size || tr.Err != nil {
			t.Errorf("traffic %+v, want %d bytes each way and no error", tr, size)
		}
	}
	if st := el.SockmapStats(); st.Promoted != conns {
		t.Errorf("%d connections promoted, want %d", st.Promoted, conns)
	}
	resEventually(t, "no active connection", func() bool { return s.ActiveConns() == 0 })
}

// echoPromoted sends size random bytes in 16 KiB pieces, each read back before the next:
// half of them, then pieces of one byte until the connection is older than age (the proxy
// moves it into the kernel at one of those), then the rest; it checks the SHA-256 of all
// that came back.
func echoPromoted(addr string, size int, age time.Duration) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	start := time.Now()
	data := make([]byte, size)
	rand.Read(data)
	sent, got := sha256.New(), sha256.New()
	piece := func(b []byte) error {
		sent.Write(b)
		if _, err := c.Write(b); err != nil {
			return err
		}
		_, err := io.CopyN(got, c, int64(len(b)))
		return err
	}
	for off := 0; off < size; off += 16 << 10 {
		if off == size/2 {
			for time.Since(start) < age {
				if err := piece([]byte{'.'}); err != nil {
					return err
				}
			}
		}
		if err := piece(data[off : off+16<<10]); err != nil {
			return err
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		return fmt.Errorf("after the echo: %d more bytes, %v", len(rest), err)
	}
	if !bytes.Equal(sent.Sum(nil), got.Sum(nil)) {
		return errors.New("echoed bytes differ from those sent")
	}
	return nil
}

// TestSockmapEarlyDataAndBanner: bytes queued in a socket before it enters the kernel are
// delivered (the client's request sent with the connect; a backend that speaks first),
// with every connection moved at once.
func TestSockmapEarlyDataAndBanner(t *testing.T) {
	banner := func(c *net.TCPConn) {
		c.Write([]byte("hello\n"))
		smEcho(c)
	}
	_, el, addr := smProxy(t, -1, banner, nil)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			req := fmt.Sprintf("request %d", i)
			c.Write([]byte(req)) // at once: before the proxy has dialed the backend
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			want := "hello\n" + req
			got := make([]byte, len(want))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
				t.Errorf("got %q, %v; want %q", got, err, want)
			}
			c.(*net.TCPConn).CloseWrite()
			if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
				t.Errorf("after the echo: %q, %v", rest, err)
			}
		}()
	}
	wg.Wait()
	if el.SockmapStats().Promoted == 0 {
		t.Error("no connection was promoted")
	}
}

// TestSockmapHalfCloseBothWays: a promoted connection passes a FIN on each way while the
// other direction keeps flowing, and the FIN never overtakes bytes still in the kernel.
func TestSockmapHalfCloseBothWays(t *testing.T) {
	reply := bytes.Repeat([]byte("r"), 512<<10)
	cases := []struct {
		name    string
		backend func(*net.TCPConn)
		client  func(t *testing.T, c *net.TCPConn, el *EventLoops) error
	}{
		{"client first", func(c *net.TCPConn) { // answers only after the client's FIN
			io.ReadAll(c)
			c.Write(reply)
			c.CloseWrite()
		}, func(t *testing.T, c *net.TCPConn, el *EventLoops) error {
			c.Write(bytes.Repeat([]byte("q"), 256<<10))
			c.CloseWrite() // most often before the promotion: the relay passes it on
			return readExactly(c, reply)
		}},
		{"client first, promoted", func(c *net.TCPConn) {
			io.ReadAll(c)
			c.Write(reply)
			c.CloseWrite()
		}, func(t *testing.T, c *net.TCPConn, el *EventLoops) error {
			c.Write(bytes.Repeat([]byte("q"), 256<<10))
			// promotion comes once the relay has nothing queued: the backend reads it all
			resEventually(t, "the connection to be promoted", func() bool { return el.SockmapStats().InKernel == 1 })
			c.CloseWrite()
			return readExactly(c, reply)
		}},
		{"backend first", func(c *net.TCPConn) { // says its piece when asked, ends it, reads on
			c.Read(make([]byte, 1))
			c.Write(reply)
			c.CloseWrite()
			io.Copy(io.Discard, c)
		}, func(t *testing.T, c *net.TCPConn, el *EventLoops) error {
			resEventually(t, "the connection to be promoted", func() bool { return el.SockmapStats().InKernel == 1 })
			c.Write([]byte("g"))
			if err := readExactly(c, reply); err != nil {
				return err
			}
			if _, err := c.Write([]byte("still open")); err != nil {
				return fmt.Errorf("write after the backend's FIN: %w", err)
			}
			return c.CloseWrite()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obs := resObserver{closed: make(chan Traffic, 1)}
			_, el, addr := smProxy(t, -1, tc.backend, func(s *Server) { s.Observer = obs })
			c := resDial(t, addr)
			if err := tc.client(t, c, el); err != nil {
				t.Fatal(err)
			}
			if tr := <-obs.closed; tr.Err != nil || tr.Down != int64(len(reply)) {
				t.Errorf("traffic %+v, want %d bytes down and no error", tr, len(reply))
			}
			if tc.name != "client first" && el.SockmapStats().Promoted != 1 {
				t.Error("the connection was not promoted")
			}
		})
	}
}

// readExactly reads to EOF and wants exactly want.
func readExactly(c *net.TCPConn, want []byte) error {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, want) {
		return fmt.Errorf("read %d bytes (%v), want %d", len(got), err, len(want))
	}
	return nil
}

// TestSockmapResetPassedOn: a reset on either side of a promoted connection resets the other.
func TestSockmapResetPassedOn(t *testing.T) {
	t.Run("backend resets", func(t *testing.T) {
		reset := func(c *net.TCPConn) {
			one := make([]byte, 1)
			c.Read(one)
			c.SetLinger(0)
			c.Close()
		}
		_, el, addr := smProxy(t, -1, reset, nil)
		c := resDial(t, addr)
		resEventually(t, "the connection to be promoted", func() bool { return el.SockmapStats().InKernel == 1 })
		c.Write([]byte("x"))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client read %v, want a reset", err)
		}
	})
	t.Run("client resets", func(t *testing.T) {
		got := make(chan error, 1)
		watch := func(c *net.TCPConn) {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := io.Copy(io.Discard, c)
			got <- err
		}
		_, el, addr := smProxy(t, -1, watch, nil)
		c := resDial(t, addr)
		resEventually(t, "the connection to be promoted", func() bool { return el.SockmapStats().InKernel == 1 })
		c.SetLinger(0)
		c.Close()
		if err := <-got; !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("backend read %v, want a reset", err)
		}
	})
}

// TestSockmapForceRemoveAndIdle: CloseBackend resets promoted connections, and the idle
// timeout closes a promoted connection on which nothing moves, but not one that keeps busy.
func TestSockmapForceRemoveAndIdle(t *testing.T) {
	t.Run("force remove", func(t *testing.T) {
		s, el, addr := smProxy(t, -1, smEcho, nil)
		c := resDial(t, addr)
		resEventually(t, "the connection to be promoted", func() bool { return el.SockmapStats().InKernel == 1 })
		if !resEchoes(t, c, "ping") {
			t.Fatal("no echo through the kernel")
		}
		key := s.Picker.(*pool.Pool).Snapshot()[0].Key
		if n := s.CloseBackend(key); n != 1 {
			t.Errorf("CloseBackend reset %d connections, want 1", n)
		}
		resWaitClosed(t, c)
	})
	t.Run("idle", func(t *testing.T) {
		const idle = 300 * time.Millisecond
		obs := resObserver{closed: make(chan Traffic, 2)}
		_, el, addr := smProxy(t, -1, smEcho, func(s *Server) { s.IdleTimeout = idle; s.Observer = obs })
		quiet, busy := resDial(t, addr), resDial(t, addr)
		resEventually(t, "both connections to be promoted", func() bool { return el.SockmapStats().InKernel == 2 })
		start := time.Now()
		for time.Since(start) < 3*idle { // the busy one echoes all along; the quiet one times out
			if !resEchoes(t, busy, "tick") {
				t.Fatal("the busy connection was closed")
			}
		}
		resWaitClosed(t, quiet)
		if tr := <-obs.closed; !errors.Is(tr.Err, ErrIdle) {
			t.Errorf("quiet connection closed with %v, want the idle timeout", tr.Err)
		}
		if !resEchoes(t, busy, "still here") {
			t.Error("the busy connection was closed")
		}
	})
}

// TestSockmapSlowReaderGetsEverything: a promoted connection whose client reads only once
// the backend's 64 MiB (far more than the sockets' buffers) have filled every buffer and
// the mover has paused the direction gets every byte in order, then the FIN, and the down
// count is exact.
func TestSockmapSlowReaderGetsEverything(t *testing.T) {
	const size = 64 << 20
	send := func(c *net.TCPConn) {
		buf := make([]byte, 64<<10)
		c.Read(buf[:1]) // the client's go-ahead, once promoted
		for n := 0; n < size; n += len(buf) {
			for i := range buf {
				buf[i] = byte(n/len(buf) + i)
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
		c.CloseWrite()
		io.Copy(io.Discard, c)
	}
	obs := resObserver{closed: make(chan Traffic, 1)}
	_, el, addr := smProxy(t, -1, send, func(s *Server) { s.Observer = obs })
	c := resDial(t, addr)
	resEventually(t, "the connection to be promoted", func() bool { return el.SockmapStats().InKernel == 1 })
	c.Write([]byte("g"))
	resEventually(t, "the direction to be paused", func() bool { return el.SockmapStats().Paused == 1 })
	want := sha256.New()
	buf := make([]byte, 64<<10)
	for n := 0; n < size; n += len(buf) {
		for i := range buf {
			buf[i] = byte(n/len(buf) + i)
		}
		want.Write(buf)
	}
	if err := readHashed(c, size, want.Sum(nil)); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	if tr := <-obs.closed; tr.Down != size || tr.Up != 1 || tr.Err != nil {
		t.Errorf("traffic %+v, want %d down, 1 up, no error", tr, size)
	}
}

// readHashed reads to EOF and wants size bytes with the SHA-256 sum.
func readHashed(c *net.TCPConn, size int64, sum []byte) error {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil || n != size || !bytes.Equal(h.Sum(nil), sum) {
		return fmt.Errorf("read %d of %d bytes (%v); same bytes: %v", n, size, err, bytes.Equal(h.Sum(nil), sum))
	}
	return nil
}

// TestSockmapLeavesNoDescriptors: once a sockmap Server has shut down and its loops have
// stopped, the descriptors (sockets, maps, program, epoll sets) are back to the start.
func TestSockmapLeavesNoDescriptors(t *testing.T) {
	requireSockmap(t)
	start := fdSet(t)
	t.Run("serve", func(t *testing.T) {
		_, el, addr := smProxy(t, -1, smEcho, nil)
		for range 5 {
			c := resDial(t, addr)
			resEventually(t, "the connection to be promoted", func() bool { return el.SockmapStats().InKernel >= 1 })
			if !resEchoes(t, c, "ping") {
				t.Fatal("no echo through the kernel")
			}
			c.Close()
			resEventually(t, "the connection to leave the kernel", func() bool { return el.SockmapStats().InKernel == 0 })
		}
	})
	resEventually(t, "descriptors back to the start", func() bool { return len(newFDs(t, start)) == 0 })
}

// TestSockmapClientRefusedHalfJoins: when the client cannot join the kernel after its backend
// has (its FIN came during the promotion), the kernel moves the backend's bytes and the loop
// the client's: every byte arrives in order both ways, the FINs pass, the counts are exact.
func TestSockmapClientRefusedHalfJoins(t *testing.T) {
	const conns, size = 20, 1 << 20
	requireSockmap(t)
	el, err := NewSockmapLoops(2, SockmapConfig{After: -1, MaxConns: 100})
	if err != nil {
		t.Fatal(err)
	}
	el.smap.kernel.refuseClient = true
	t.Cleanup(el.Stop)
	t.Cleanup(func() { assertKernelEmpty(t, el) })
	obs := resObserver{closed: make(chan Traffic, conns)}
	s := &Server{Picker: resPool(t, resBackend(t, smEcho)), Logger: quiet, DataPlane: PlaneSockmap, Loops: el, Observer: obs}
	addr := serveLoopback(t, s, s.Picker, s.Stats())
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := echoPromoted(addr, size, 0); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for range conns {
		if tr := <-obs.closed; tr.Up != size || tr.Down != size || tr.Err != nil {
			t.Errorf("traffic %+v, want %d bytes each way and no error", tr, size)
		}
	}
	if st := el.SockmapStats(); st.Promoted != conns {
		t.Errorf("%d connections half joined, want %d", st.Promoted, conns)
	}
}
