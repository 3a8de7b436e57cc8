package listener

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// listen accepts and closes connections on addr until the test ends.
func hcListen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln
}

func hcRegister(t *testing.T, p *pool.Pool, addr string) {
	t.Helper()
	a, err := pool.ParseAddress(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.RegisterStatic(a, 1); err != nil {
		t.Fatal(err)
	}
}

func hcState(p *pool.Pool, key string) pool.State {
	for _, s := range p.Snapshot() {
		if s.Key == key {
			return s.State
		}
	}
	return ""
}

// run starts c until the test ends.
func hcRun(t *testing.T, c *HealthChecker) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestChecksMarkDownAndUp(t *testing.T) {
	p := &pool.Pool{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	live := hcListen(t, "127.0.0.1:0").Addr().String()
	dead := hcListen(t, "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	hcRegister(t, p, live)
	hcRegister(t, p, deadAddr)

	var checks atomic.Int64
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == deadAddr {
			checks.Add(1)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	hcRun(t, &HealthChecker{Targets: p, Interval: 10 * time.Millisecond, Timeout: time.Second, Fall: 3, Rise: 2, Dial: dial})
	resEventually(t, "dead backend down", func() bool { return hcState(p, deadAddr) == pool.StateDown })
	if n := checks.Load(); n < 3 {
		t.Fatalf("down after %d checks, want fall=3", n)
	}
	if s := hcState(p, live); s != pool.StateStatic {
		t.Fatalf("live backend is %s", s)
	}
	hcListen(t, deadAddr) // the backend comes back on its port
	resEventually(t, "revived backend up", func() bool { return hcState(p, deadAddr) == pool.StateStatic })
}

func TestConcurrencyIsBounded(t *testing.T) {
	p := &pool.Pool{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	const n, limit = 40, 4
	for i := 1; i <= n; i++ {
		if err := p.RegisterStatic(pool.Address{Host: "10.0.0.1", Port: i}, 1); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	inFlight, peak, total := 0, 0, 0
	gate := make(chan struct{})
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		inFlight++
		total++
		peak = max(peak, inFlight)
		mu.Unlock()
		<-gate
		mu.Lock()
		inFlight--
		mu.Unlock()
		return nil, errors.New("refused")
	}
	c := &HealthChecker{Targets: p, Concurrency: limit, Fall: 1, Dial: dial}
	done := make(chan struct{})
	go func() { defer close(done); c.Round(context.Background()) }()
	resEventually(t, "checks in flight", func() bool { mu.Lock(); defer mu.Unlock(); return inFlight == limit })
	close(gate)
	<-done
	if peak != limit || total != n {
		t.Fatalf("%d checks, at most %d at once; want %d, at most %d", total, peak, n, limit)
	}
	for _, s := range p.Snapshot() {
		if s.State != pool.StateDown {
			t.Fatalf("%s is %s after a failed check with fall=1", s.Key, s.State)
		}
	}
}

func TestPickingDuringSlowChecks(t *testing.T) {
	p := &pool.Pool{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	p.RegisterStatic(pool.Address{Host: "10.0.0.1", Port: 1}, 1)
	gate := make(chan struct{})
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		<-gate
		return nil, errors.New("refused")
	}
	c := &HealthChecker{Targets: p, Dial: dial}
	done := make(chan struct{})
	go func() { defer close(done); c.Round(context.Background()) }()
	for range 100 { // a check hangs; picks go on
		b, err := p.Acquire(netip.Addr{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		p.Release(b)
	}
	close(gate)
	<-done
}
