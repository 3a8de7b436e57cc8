package pool

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/testbed"
)

// closingListener accepts and closes connections on addr until the test ends: a backend that
// passes a TCP check.
func closingListener(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	testbed.ServeOn(t, ln, func(net.Conn) error { return nil }) // the connection is closed on return
	return ln
}

func registerStatic(t *testing.T, p *Pool, addr string) {
	t.Helper()
	a, err := ParseAddress(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.RegisterStatic(a, 1); err != nil {
		t.Fatal(err)
	}
}

func stateOf(p *Pool, key string) State {
	if s, ok := p.Lookup(key); ok {
		return s.State
	}
	return ""
}

// maintain runs p.Maintain until the test ends.
func maintain(t *testing.T, p *Pool, m Maintenance) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Maintain(ctx, m) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestChecksMarkDownAndUp(t *testing.T) {
	p := &Pool{Logger: quiet, HealthFall: 3, HealthRise: 2}
	live := closingListener(t, "127.0.0.1:0").Addr().String()
	dead := closingListener(t, "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	registerStatic(t, p, live)
	registerStatic(t, p, deadAddr)

	var checks atomic.Int64
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == deadAddr {
			checks.Add(1)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	maintain(t, p, Maintenance{Checks: HealthCheck{Interval: 10 * time.Millisecond, Timeout: time.Second, Dial: dial}})
	resEventually(t, func() bool { return stateOf(p, deadAddr) == StateDown })
	if n := checks.Load(); n < 3 {
		t.Fatalf("down after %d checks, want fall=3", n)
	}
	if s := stateOf(p, live); s != StateStatic {
		t.Fatalf("live backend is %s", s)
	}
	closingListener(t, deadAddr) // the backend comes back on its port
	resEventually(t, func() bool { return stateOf(p, deadAddr) == StateStatic })
}

func TestConcurrencyIsBounded(t *testing.T) {
	p := &Pool{Logger: quiet, HealthFall: 1}
	const n, limit = 40, 4
	for i := 1; i <= n; i++ {
		if err := p.RegisterStatic(Address{Host: "10.0.0.1", Port: i}, 1); err != nil {
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
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.checkRound(context.Background(), HealthCheck{Concurrency: limit, Dial: dial})
	}()
	resEventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return inFlight == limit })
	close(gate)
	<-done
	if peak != limit || total != n {
		t.Fatalf("%d checks, at most %d at once; want %d, at most %d", total, peak, n, limit)
	}
	for _, s := range p.Snapshot() {
		if s.State != StateDown {
			t.Fatalf("%s is %s after a failed check with fall=1", s.Key, s.State)
		}
	}
}

func TestPickingDuringSlowChecks(t *testing.T) {
	p := &Pool{Logger: quiet}
	p.RegisterStatic(Address{Host: "10.0.0.1", Port: 1}, 1)
	gate, started := make(chan struct{}), make(chan struct{})
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		close(started)
		<-gate
		return nil, errors.New("refused")
	}
	done := make(chan struct{})
	go func() { defer close(done); p.checkRound(context.Background(), HealthCheck{Dial: dial}) }()
	<-started // a check hangs from here on; picks go on
	picked := make(chan error, 1)
	go func() {
		for range 100 {
			b, err := p.Acquire(netip.Addr{}, nil)
			if err != nil {
				picked <- err
				return
			}
			p.Release(b)
		}
		picked <- nil
	}()
	select {
	case err := <-picked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("picking waited for a hanging health check")
	}
	close(gate)
	<-done
}

// TestFallCountsRounds: with HealthFall 3, two failed rounds leave a backend up and the third
// takes it down; with HealthRise 2, one passing round leaves it down and the second brings it
// back.
func TestFallCountsRounds(t *testing.T) {
	p := &Pool{Logger: quiet, HealthFall: 3, HealthRise: 2}
	registerStatic(t, p, "10.0.0.1:1")
	var fail atomic.Bool
	fail.Store(true)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if fail.Load() {
			return nil, errors.New("refused")
		}
		return closingConn{}, nil
	}
	round := func() { p.checkRound(context.Background(), HealthCheck{Dial: dial}) }
	for i, want := range []State{StateStatic, StateStatic, StateDown} {
		round()
		if got := stateOf(p, "10.0.0.1:1"); got != want {
			t.Fatalf("after failed round %d: %s, want %s", i+1, got, want)
		}
	}
	fail.Store(false)
	for i, want := range []State{StateDown, StateStatic} {
		round()
		if got := stateOf(p, "10.0.0.1:1"); got != want {
			t.Fatalf("after passing round %d: %s, want %s", i+1, got, want)
		}
	}
}

// closingConn is a connection that a passing check only closes.
type closingConn struct{ net.Conn }

func (closingConn) Close() error { return nil }

// TestMaintainSweeps: the same loop that checks also forgets expired backends.
func TestMaintainSweeps(t *testing.T) {
	p := &Pool{Logger: quiet, TTL: time.Millisecond}
	if _, err := p.Register(Address{Host: "10.0.0.1", Port: 1}, 1); err != nil {
		t.Fatal(err)
	}
	maintain(t, p, Maintenance{SweepInterval: 5 * time.Millisecond})
	resEventually(t, func() bool { return p.Len() == 0 })
}
