package listener_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("echo %q, want %q", buf, msg)
	}
}

func TestBurstOfHeldConnectionsSpreadsExactly(t *testing.T) {
	eachPlane(t, testBurstOfHeldConnectionsSpreadsExactly)
}

func testBurstOfHeldConnectionsSpreadsExactly(t *testing.T) {
	bs := []*backend{startBackend(t, hold), startBackend(t, hold), startBackend(t, hold), startBackend(t, hold)}
	px := startProxy(t, &pool.Pool{}, bs...)
	const n = 41
	var wg sync.WaitGroup
	conns := make(chan net.Conn, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", px.addr)
			if err != nil {
				t.Error(err)
				return
			}
			conns <- c
		}()
	}
	wg.Wait()
	close(conns)
	eventually(t, "41 backend connections", func() bool {
		return bs[0].open()+bs[1].open()+bs[2].open()+bs[3].open() == n
	})
	lo, hi := n, 0
	for _, b := range bs {
		lo, hi = min(lo, b.open()), max(hi, b.open())
		if got := px.counts()[key(b)]; got != int64(b.open()) {
			t.Errorf("%s: pool counts %d, backend sees %d", key(b), got, b.open())
		}
	}
	if hi-lo > 1 {
		t.Errorf("burst spread max-min = %d, want <= 1", hi-lo)
	}
	for c := range conns {
		c.Close()
	}
	px.assertNoCounts(t)
}

func TestSequentialConnectionsSpreadEvenly(t *testing.T) {
	eachPlane(t, testSequentialConnectionsSpreadEvenly)
}

func testSequentialConnectionsSpreadEvenly(t *testing.T) {
	bs := []*backend{startBackend(t, echo), startBackend(t, echo), startBackend(t, echo)}
	px := startProxy(t, &pool.Pool{}, bs...)
	for i := 0; i < 30; i++ {
		c := px.dial(t)
		roundTrip(t, c, "ping")
		c.Close()
		eventually(t, "release", func() bool { return px.total() == 0 })
	}
	for _, b := range bs {
		if b.accepted() != 10 {
			t.Errorf("%s accepted %d of 30 sequential connections, want 10", key(b), b.accepted())
		}
	}
}

func TestHalfCloseDeliversWholeReply(t *testing.T) { eachPlane(t, testHalfCloseDeliversWholeReply) }

func testHalfCloseDeliversWholeReply(t *testing.T) {
	// The backend answers only after the client's FIN, as a request/response protocol that
	// uses shutdown(SHUT_WR) to end a request does.
	reply := bytes.Repeat([]byte("r"), 300<<10)
	b := startBackend(t, func(c *net.TCPConn) {
		req, _ := io.ReadAll(c)
		c.Write(append([]byte(nil), reply[:len(reply)-len(req)]...))
		c.Write(req)
		c.CloseWrite()
	})
	px := startProxy(t, &pool.Pool{}, b)
	c := px.dial(t)
	io.WriteString(c, "request")
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read after half-close: %v", err)
	}
	if len(got) != len(reply) || !bytes.HasSuffix(got, []byte("request")) {
		t.Fatalf("got %d bytes, want %d ending in the request", len(got), len(reply))
	}
	c.Close()
	px.assertNoCounts(t)
}

func TestFiftyConcurrentMiBEchoesMatch(t *testing.T) { eachPlane(t, testFiftyConcurrentMiBEchoesMatch) }

func testFiftyConcurrentMiBEchoesMatch(t *testing.T) {
	bs := []*backend{startBackend(t, echo), startBackend(t, echo), startBackend(t, echo)}
	px := startProxy(t, &pool.Pool{}, bs...)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := echoMiB(px.addr); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	px.assertNoCounts(t)
}

// echoMiB sends 1 MiB of random bytes and checks the SHA-256 of what comes back.
func echoMiB(addr string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	data := make([]byte, 1<<20)
	rand.Read(data)
	want := sha256.Sum256(data)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if werr := <-errc; werr != nil {
		return werr
	}
	if err != nil {
		return err
	}
	if got := h.Sum(nil); n != 1<<20 || !bytes.Equal(got, want[:]) {
		return errors.New("echoed bytes differ from those sent")
	}
	return nil
}

func deadAddress(t *testing.T) pool.Address {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return pool.Address{Host: "127.0.0.1", Port: port}
}

func TestDeadBackendCostsClientsNothing(t *testing.T) {
	eachPlane(t, testDeadBackendCostsClientsNothing)
}

func testDeadBackendCostsClientsNothing(t *testing.T) {
	live := []*backend{startBackend(t, echo), startBackend(t, echo)}
	p := &pool.Pool{}
	px := startProxy(t, p, live...)
	dead := deadAddress(t)
	if _, err := p.Register(dead, 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		c := px.dial(t)
		roundTrip(t, c, "still here")
		c.Close()
	}
	if px.srv.Stats().DialErrors.Load() == 0 {
		t.Error("the dead backend was never tried: test proves nothing")
	}
	if n := px.srv.Stats().Failed.Load() + px.srv.Stats().Rejected.Load(); n != 0 {
		t.Errorf("%d clients failed", n)
	}
	px.assertNoCounts(t)
}

func TestNoLiveBackendClosesClientAtOnce(t *testing.T) {
	eachPlane(t, testNoLiveBackendClosesClientAtOnce)
}

func testNoLiveBackendClosesClientAtOnce(t *testing.T) {
	px := startProxy(t, &pool.Pool{})
	c := px.dial(t)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read = %d, %v; want the connection closed", n, err)
	}
	eventually(t, "rejected count", func() bool { return px.srv.Stats().Rejected.Load() == 1 })
}

func TestRemovalLeavesEstablishedRunning(t *testing.T) {
	eachPlane(t, testRemovalLeavesEstablishedRunning)
}

func testRemovalLeavesEstablishedRunning(t *testing.T) {
	a, b := startBackend(t, echo), startBackend(t, echo)
	p := &pool.Pool{}
	px := startProxy(t, p, a)
	old := px.dial(t)
	roundTrip(t, old, "before")
	if err := p.Deregister(key(a)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Register(b.addr(), 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		c := px.dial(t)
		roundTrip(t, c, "new")
		c.Close()
	}
	if a.accepted() != 1 {
		t.Errorf("removed backend accepted %d connections, want only the first", a.accepted())
	}
	roundTrip(t, old, "after removal")
	old.Close()
	eventually(t, "removed backend forgotten", func() bool { _, ok := px.counts()[key(a)]; return !ok })
}

func TestBackendResetClosesClient(t *testing.T) { eachPlane(t, testBackendResetClosesClient) }

func testBackendResetClosesClient(t *testing.T) {
	b := startBackend(t, func(c *net.TCPConn) {
		c.Read(make([]byte, 1))
		c.SetLinger(0)
		c.Close()
	})
	px := startProxy(t, &pool.Pool{}, b)
	c := px.dial(t)
	io.WriteString(c, "x")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	// A clean EOF would tell the client the reply was complete: it must see the reset.
	if _, err := io.ReadAll(c); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client read ended with %v, want a connection reset", err)
	}
	px.assertNoCounts(t)
}

func TestShutdownLetsInFlightTransferFinish(t *testing.T) {
	eachPlane(t, testShutdownLetsInFlightTransferFinish)
}

func testShutdownLetsInFlightTransferFinish(t *testing.T) {
	release := make(chan struct{})
	payload := bytes.Repeat([]byte("d"), 1<<20)
	b := startBackend(t, func(c *net.TCPConn) {
		c.Write(payload[:1000])
		<-release
		c.Write(payload[1000:])
	})
	px := startProxy(t, &pool.Pool{}, b)
	c := px.dial(t)
	first := make([]byte, 1000)
	if _, err := io.ReadFull(c, first); err != nil {
		t.Fatal(err)
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shut <- px.srv.Shutdown(ctx)
	}()
	eventually(t, "listener closed", func() bool {
		nc, err := net.Dial("tcp", px.addr)
		if err == nil {
			nc.Close()
		}
		return err != nil
	})
	close(release)
	rest, err := io.ReadAll(c)
	if err != nil || len(rest) != len(payload)-1000 {
		t.Fatalf("in-flight transfer: %d bytes, %v; want %d", len(rest), err, len(payload)-1000)
	}
	c.Close()
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestShutdownClosesConnectionsAfterTimeout(t *testing.T) {
	eachPlane(t, testShutdownClosesConnectionsAfterTimeout)
}

func testShutdownClosesConnectionsAfterTimeout(t *testing.T) {
	b := startBackend(t, hold)
	px := startProxy(t, &pool.Pool{}, b)
	c := px.dial(t)
	eventually(t, "held connection", func() bool { return px.total() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := px.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("client connection still open after forced shutdown")
	}
	px.assertNoCounts(t)
}
