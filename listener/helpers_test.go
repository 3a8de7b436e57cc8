package listener_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fulcrumlb/fulcrum/internal/testbed"
	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testbed.Eventually(t, 10*time.Second, what, cond)
}

// backend is a loopback TCP server run by a test; handle serves each connection.
type backend struct{ *testbed.Backend }

func startBackend(t testing.TB, handle func(*net.TCPConn)) *backend {
	t.Helper()
	return &backend{testbed.Serve(t, func(c net.Conn) error { handle(c.(*net.TCPConn)); return nil })}
}

func (b *backend) close() { b.Stop() }

func (b *backend) open() int { return b.Open() }

func (b *backend) accepted() int { return int(b.Accepted()) }

func (b *backend) addr() pool.Address {
	return pool.Address{Host: "127.0.0.1", Port: b.Port()}
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
