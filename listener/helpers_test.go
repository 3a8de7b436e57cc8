package listener_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// backend is a loopback TCP server run by a test; handle serves each connection.
type backend struct {
	ln     *net.TCPListener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[*net.TCPConn]bool
	seen   int // connections accepted
	handle func(*net.TCPConn)
}

func startBackend(t *testing.T, handle func(*net.TCPConn)) *backend {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{ln: ln, conns: map[*net.TCPConn]bool{}, handle: handle}
	b.wg.Add(1)
	go b.acceptLoop()
	t.Cleanup(b.close)
	return b
}

func (b *backend) acceptLoop() {
	defer b.wg.Done()
	for {
		c, err := b.ln.AcceptTCP()
		if err != nil {
			return
		}
		b.mu.Lock()
		b.conns[c] = true
		b.seen++
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer c.Close()
			b.handle(c)
			b.mu.Lock()
			delete(b.conns, c)
			b.mu.Unlock()
		}()
	}
}

func (b *backend) close() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *backend) open() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

func (b *backend) accepted() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen
}

func (b *backend) addr() pool.Address {
	return pool.Address{Host: "127.0.0.1", Port: b.ln.Addr().(*net.TCPAddr).Port}
}

// echo copies everything back and passes the client's FIN on.
func echo(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

// hold keeps the connection open until the client closes it.
func hold(c *net.TCPConn) { io.Copy(io.Discard, c) }

// proxy is a listener.Server on a loopback port in front of a pool.
type proxy struct {
	srv  *listener.Server
	pool *pool.Pool
	addr string
	done chan error
}

func startProxy(t *testing.T, p *pool.Pool, backends ...*backend) *proxy {
	t.Helper()
	p.Logger = quiet
	for _, b := range backends {
		if _, err := p.Register(b.addr(), 0); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &proxy{
		srv:  &listener.Server{Picker: p, Retries: 2, ConnectTimeout: 2 * time.Second, Logger: quiet, DataPlane: planeOf(t)},
		pool: p,
		addr: ln.Addr().String(),
		done: make(chan error, 1),
	}
	go func() { px.done <- px.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		px.srv.Shutdown(ctx)
		if err := <-px.done; !errors.Is(err, listener.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		px.assertNoCounts(t)
	})
	return px
}

func (px *proxy) dial(t *testing.T) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func (px *proxy) counts() map[string]int64 {
	m := map[string]int64{}
	for _, s := range px.pool.Snapshot() {
		m[s.Key] = s.Active
	}
	return m
}

func (px *proxy) total() int64 {
	var n int64
	for _, v := range px.counts() {
		n += v
	}
	return n
}

// assertNoCounts waits for every backend count to return to zero, and checks the server
// never refused a release (which would mean a double decrement).
func (px *proxy) assertNoCounts(t *testing.T) {
	t.Helper()
	eventually(t, "all counts back to 0", func() bool { return px.total() == 0 })
	if n := px.srv.Stats().ReleaseBugs.Load(); n != 0 {
		t.Errorf("%d releases without a matching acquire", n)
	}
}

func key(b *backend) string { return b.addr().Key() }

// eachPlane and planeOf are the package's own (planes_test.go): startProxy reads the plane of
// the eachPlane subtest back with planeOf.
var eachPlane, planeOf = listener.EachPlane, listener.PlaneOf
