package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// resClock is a settable clock for Pool.Now.
type resClock struct {
	mu sync.Mutex
	t  time.Time
}

func newResClock() *resClock { return &resClock{t: time.Unix(1_700_000_000, 0)} }

func (c *resClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *resClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newResPool returns a pool on a fake clock with static backends 10.0.0.1:1 .. :n.
func newResPool(t *testing.T, n int) (*Pool, *resClock, []*Backend) {
	t.Helper()
	c := newResClock()
	p := &Pool{TTL: time.Minute, Now: c.Now, Logger: quiet}
	for i := 1; i <= n; i++ {
		if err := p.RegisterStatic(Address{Host: "10.0.0.1", Port: i}, 1); err != nil {
			t.Fatal(err)
		}
	}
	return p, c, resBackends(p)
}

func resBackends(p *Pool) []*Backend {
	var out []*Backend
	for _, s := range p.Snapshot() {
		out = append(out, p.backends[s.Key])
	}
	return out
}

func resState(t *testing.T, p *Pool, key string) Status {
	t.Helper()
	for _, s := range p.Snapshot() {
		if s.Key == key {
			return s
		}
	}
	t.Fatalf("%s not in snapshot", key)
	return Status{}
}

// resPickable reports whether some Acquire (excluding every other backend) returns b; it
// releases what it took.
func resPickable(t *testing.T, p *Pool, b *Backend) bool {
	t.Helper()
	var others []*Backend
	for _, o := range resBackends(p) {
		if o != b {
			others = append(others, o)
		}
	}
	got, err := p.Acquire(netip.Addr{}, others)
	if err != nil {
		return false
	}
	if got != b {
		t.Fatalf("Acquire excluding others returned %s, want %s", got.Key(), b.Key())
	}
	if err := p.Release(got); err != nil {
		t.Fatal(err)
	}
	return true
}

var resRefused = &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}

func TestBackendFault(t *testing.T) {
	wrap := func(e syscall.Errno) error {
		return fmt.Errorf("dial x: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", e)})
	}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"EMFILE", wrap(syscall.EMFILE), false},
		{"ENFILE", wrap(syscall.ENFILE), false},
		{"EADDRNOTAVAIL", wrap(syscall.EADDRNOTAVAIL), false},
		{"shutdown", fmt.Errorf("dial: %w", context.Canceled), false},
		{"accepted then reset", wrap(syscall.ECONNRESET), false},
		{"resRefused", resRefused, true},
		{"timeout", fmt.Errorf("dial: %w", context.DeadlineExceeded), true},
		{"unreachable", wrap(syscall.EHOSTUNREACH), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := BackendFault(tc.err); got != tc.want {
				t.Errorf("BackendFault(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestPassiveBackoffDoublesAndClears(t *testing.T) {
	p, clock, bs := newResPool(t, 2)
	b := bs[0]
	p.ReportDial(b, resRefused)
	if s := resState(t, p, b.Key()); s.State != StateDown || s.LastError == "" || !s.LastErrorTime.Equal(clock.Now()) {
		t.Fatalf("after a failed dial: %+v", s)
	}
	for _, backoff := range []time.Duration{1, 2, 4, 8, 16, 30, 30} {
		backoff *= time.Second
		clock.Advance(backoff - time.Millisecond)
		if resPickable(t, p, b) {
			t.Fatalf("picked %v before its %v backoff ended", time.Duration(0), backoff)
		}
		clock.Advance(time.Millisecond)
		trial, err := p.Acquire(netip.Addr{}, []*Backend{bs[1]})
		if err != nil || trial != b {
			t.Fatalf("backoff %v ended: Acquire = %v, %v; want the trial of %s", backoff, trial, err, b.Key())
		}
		if _, err := p.Acquire(netip.Addr{}, []*Backend{bs[1]}); !errors.Is(err, ErrNoBackend) {
			t.Fatalf("a second connection during the trial: err %v, want ErrNoBackend", err)
		}
		p.ReportDial(b, resRefused)
		p.Release(b)
		if got := resState(t, p, b.Key()).State; got != StateDown {
			t.Fatalf("after failed trial: state %s", got)
		}
	}
	clock.Advance(maxBackoff)
	trial, _ := p.Acquire(netip.Addr{}, []*Backend{bs[1]})
	p.ReportDial(trial, nil)
	p.Release(trial)
	if got := resState(t, p, b.Key()).State; got != StateStatic {
		t.Fatalf("after a successful trial: state %s, want static", got)
	}
	// Success cleared the backoff: the next failure starts again at 1 s.
	p.ReportDial(b, resRefused)
	clock.Advance(firstBackoff)
	if !resPickable(t, p, b) {
		t.Fatal("backoff did not restart at 1s after a success")
	}
}

func TestStragglerFailuresDoNotDoubleBackoff(t *testing.T) {
	p, clock, bs := newResPool(t, 1)
	b := bs[0]
	held := make([]*Backend, 3)
	for i := range held {
		held[i], _ = p.Acquire(netip.Addr{}, nil)
	}
	for range held { // three dials in flight all fail
		p.ReportDial(b, resRefused)
	}
	clock.Advance(firstBackoff)
	if !resPickable(t, p, b) {
		t.Fatal("backoff grew past 1s from failures of one outage")
	}
	for _, h := range held {
		p.Release(h)
	}
}

func TestLocalErrorsDoNotMarkDown(t *testing.T) {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.EADDRNOTAVAIL} {
		t.Run(e.Error(), func(t *testing.T) {
			p, _, bs := newResPool(t, 1)
			p.ReportDial(bs[0], &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", e)})
			p.HealthFall, p.HealthRise = 1, 1
			p.ReportCheck(bs[0], fmt.Errorf("check: %w", e))
			if s := resState(t, p, bs[0].Key()); s.State != StateStatic || s.LastError != "" {
				t.Fatalf("local %v changed the backend: %+v", e, s)
			}
		})
	}
}

func TestHeartbeatDoesNotReviveDownBackend(t *testing.T) {
	p, clock, _ := newResPool(t, 0)
	a := Address{Host: "10.0.0.9", Port: 80}
	p.Register(a, 1)
	b := p.backends[a.Key()]
	p.ReportDial(b, resRefused)
	clock.Advance(100 * time.Millisecond)
	p.Register(a, 1)
	if got := resState(t, p, a.Key()).State; got != StateDown {
		t.Fatalf("heartbeat changed a down backend to %s", got)
	}
	if _, err := p.Acquire(netip.Addr{}, nil); !errors.Is(err, ErrNoBackend) {
		t.Fatalf("down backend picked after a heartbeat: %v", err)
	}
}

func TestActiveChecks(t *testing.T) {
	fail := errors.New("connect: resRefused")
	cases := []struct {
		name       string
		fall, rise int
		results    []error // in order
		want       []State // state after each
	}{
		{"fall 3", 3, 2, []error{fail, fail, nil, fail, fail, fail}, []State{"static", "static", "static", "static", "static", "down"}},
		{"rise 2", 1, 2, []error{fail, nil, fail, nil, nil}, []State{"down", "down", "down", "down", "static"}},
		{"fall 1 rise 1", 1, 1, []error{fail, nil}, []State{"down", "static"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, _, bs := newResPool(t, 1)
			p.HealthFall, p.HealthRise = tc.fall, tc.rise
			for i, err := range tc.results {
				p.ReportCheck(bs[0], err)
				if got := resState(t, p, bs[0].Key()).State; got != tc.want[i] {
					t.Fatalf("after result %d (%v): state %s, want %s", i, err, got, tc.want[i])
				}
				if got, want := resPickable(t, p, bs[0]), tc.want[i] != StateDown; got != want {
					t.Fatalf("after result %d: resPickable %v, want %v", i, got, want)
				}
			}
		})
	}
}

func TestPassingCheckEndsBackoffEarly(t *testing.T) {
	p, clock, bs := newResPool(t, 1)
	p.ReportDial(bs[0], resRefused)
	clock.Advance(10 * time.Millisecond)
	p.ReportCheck(bs[0], nil)
	if got := resState(t, p, bs[0].Key()).State; got != StateStatic || !resPickable(t, p, bs[0]) {
		t.Fatalf("a passing check did not end a passive backoff: %s", got)
	}
	// A backend the checks took down does not come back by a trial dial.
	for range 3 {
		p.ReportCheck(bs[0], resRefused)
	}
	clock.Advance(time.Hour)
	if resPickable(t, p, bs[0]) {
		t.Fatal("a backend down by checks was picked without passing checks")
	}
}

func TestDrainIsSticky(t *testing.T) {
	p, _, _ := newResPool(t, 0)
	a := Address{Host: "10.0.0.9", Port: 80}
	p.Register(a, 1)
	held, _ := p.Acquire(netip.Addr{}, nil)
	if err := p.Drain(a.Key()); err != nil {
		t.Fatal(err)
	}
	p.Register(a, 1) // heartbeat
	if s := resState(t, p, a.Key()); s.State != StateDraining || s.Active != 1 {
		t.Fatalf("after drain and heartbeat: %+v", s)
	}
	if _, err := p.Acquire(netip.Addr{}, nil); !errors.Is(err, ErrNoBackend) {
		t.Fatalf("draining backend picked: %v", err)
	}
	p.Release(held)
	if s := resState(t, p, a.Key()); s.State != StateDraining || s.Active != 0 {
		t.Fatalf("drained backend not kept listed at 0: %+v", s)
	}
	if err := p.Undrain(a.Key()); err != nil {
		t.Fatal(err)
	}
	if b, err := p.Acquire(netip.Addr{}, nil); err != nil {
		t.Fatalf("undrained backend not picked: %v", err)
	} else {
		p.Release(b)
	}
	for _, f := range []func(string) error{p.Drain, p.Undrain} {
		if err := f("10.9.9.9:1"); !errors.Is(err, ErrUnknownBackend) {
			t.Fatalf("unknown backend: err %v", err)
		}
	}
}

func TestSlowStartRampsHeldBurst(t *testing.T) {
	c := newResClock()
	p := &Pool{Now: c.Now, Logger: quiet, SlowStart: 10 * time.Second}
	p.RegisterStatic(Address{Host: "10.0.0.1", Port: 1}, 1)
	p.RegisterStatic(Address{Host: "10.0.0.1", Port: 2}, 1)
	fresh := Address{Host: "10.0.0.1", Port: 3}
	p.Register(fresh, 1)
	cases := []struct {
		at       time.Duration
		min, max int // connections the new backend gets of a burst of 210
	}{
		{0, 9, 11},                 // 10%: ~210 × 0.1/2.1
		{5 * time.Second, 44, 47},  // 55%: ~210 × 0.55/2.55 = 45.3
		{10 * time.Second, 69, 71}, // done: an even third
		{time.Hour, 69, 71},        // stays done
	}
	start := c.Now()
	for _, tc := range cases {
		c.Advance(start.Add(tc.at).Sub(c.Now()))
		counts := map[string]int{}
		var held []*Backend
		for range 210 {
			b, err := p.Acquire(netip.Addr{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			counts[b.Key()]++
			held = append(held, b)
		}
		if n := counts[fresh.Key()]; n < tc.min || n > tc.max {
			t.Errorf("at %v the ramping backend took %d of 210, want %d..%d (%v)", tc.at, n, tc.min, tc.max, counts)
		}
		for _, b := range held {
			p.Release(b)
		}
	}
}

func TestSlowStartAfterComingBackUp(t *testing.T) {
	p, clock, bs := newResPool(t, 2)
	p.SlowStart = 10 * time.Second
	if bs[0].eff != permille {
		t.Fatalf("static backend ramps at start-up: eff %d", bs[0].eff)
	}
	p.ReportDial(bs[0], resRefused)
	clock.Advance(firstBackoff)
	trial, _ := p.Acquire(netip.Addr{}, []*Backend{bs[1]})
	p.ReportDial(trial, nil)
	if bs[0].eff != rampFloor {
		t.Fatalf("came back up at %d‰, want %d‰", bs[0].eff, rampFloor)
	}
	p.Release(trial)
	clock.Advance(10 * time.Second)
	p.Acquire(netip.Addr{}, nil) // steps the ramps
	if bs[0].eff != permille || len(p.ramps.list) != 0 {
		t.Fatalf("ramp did not finish: eff %d, %d ramping", bs[0].eff, len(p.ramps.list))
	}
	p.Drain(bs[1].Key())
	p.Undrain(bs[1].Key())
	if bs[1].eff != rampFloor {
		t.Fatalf("undrained at %d‰, want %d‰", bs[1].eff, rampFloor)
	}
}

func TestMaxConnsPerBackend(t *testing.T) {
	p, _, bs := newResPool(t, 2)
	p.MaxConnsPerBackend = 2
	var held []*Backend
	for range 4 {
		b, err := p.Acquire(netip.Addr{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, b)
	}
	if bs[0].active != 2 || bs[1].active != 2 {
		t.Fatalf("counts %d, %d; want 2, 2", bs[0].active, bs[1].active)
	}
	if _, err := p.Acquire(netip.Addr{}, nil); !errors.Is(err, ErrFull) {
		t.Fatalf("all full: err %v, want ErrFull", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.AcquireWait(ctx, netip.Addr{}, nil); !errors.Is(err, ErrFull) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queue timeout: err %v", err)
	}
	// Two queued callers get the next two freed slots, in order.
	got := make(chan *Backend, 2)
	for i := range 2 {
		go func() {
			b, err := p.AcquireWait(context.Background(), netip.Addr{}, nil)
			if err != nil {
				t.Error(err)
			}
			got <- b
		}()
		resEventually(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.waiters) == i+1 })
	}
	p.Release(held[0])
	p.Release(held[1])
	for range 2 {
		held = append(held, <-got)
	}
	if len(p.waiters) != 0 || p.full != 2 {
		t.Fatalf("after the queue drained: %d waiters, %d full", len(p.waiters), p.full)
	}
	for _, b := range held[2:] {
		p.Release(b)
	}
	if p.full != 0 || len(p.live.items) != 2 {
		t.Fatalf("after release: %d full, %d live", p.full, len(p.live.items))
	}
}

func TestFullDrainingBackendIsNotWaitedFor(t *testing.T) {
	p, _, bs := newResPool(t, 1)
	p.MaxConnsPerBackend = 1
	b, _ := p.Acquire(netip.Addr{}, nil)
	p.Drain(bs[0].Key())
	if _, err := p.Acquire(netip.Addr{}, nil); !errors.Is(err, ErrNoBackend) {
		t.Fatalf("full and draining: err %v, want ErrNoBackend", err)
	}
	p.Release(b)
}

func TestRemovedDownBackendIsForgotten(t *testing.T) {
	p, _, _ := newResPool(t, 0)
	a := Address{Host: "10.0.0.9", Port: 80}
	p.Register(a, 1)
	b, _ := p.Acquire(netip.Addr{}, nil)
	p.ReportDial(b, resRefused)
	p.Deregister(a.Key())
	p.Release(b)
	if p.Len() != 0 || len(p.retry) != 0 {
		t.Fatalf("removed down backend not forgotten: %d known, %d in retry", p.Len(), len(p.retry))
	}
}

// resEventually polls cond until it holds or a generous deadline passes.
func resEventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// resLogCount counts log records by message.
type resLogCount struct {
	mu sync.Mutex
	n  map[string]int
}

func (l *resLogCount) Enabled(context.Context, slog.Level) bool { return true }
func (l *resLogCount) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *resLogCount) WithGroup(string) slog.Handler            { return l }
func (l *resLogCount) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n[r.Message]++
	return nil
}

func TestStateChangesLoggedOnce(t *testing.T) {
	p, clock, bs := newResPool(t, 1)
	logs := &resLogCount{n: map[string]int{}}
	p.Logger = slog.New(logs)
	for range 5 { // five connections' dials fail in one outage
		p.ReportDial(bs[0], resRefused)
	}
	for range 3 { // three failed trials
		clock.Advance(maxBackoff)
		b, _ := p.Acquire(netip.Addr{}, nil)
		p.ReportDial(b, resRefused)
		p.Release(b)
	}
	p.HealthFall, p.HealthRise = 1, 1
	for range 3 { // failing checks of a backend already down
		p.ReportCheck(bs[0], resRefused)
	}
	p.ReportCheck(bs[0], nil)
	p.ReportCheck(bs[0], nil)
	if logs.n["backend down"] != 1 || logs.n["backend up"] != 1 {
		t.Fatalf("state change logs %v; want one backend down and one backend up", logs.n)
	}
}
