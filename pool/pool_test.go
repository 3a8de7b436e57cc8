package pool_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// clock is a settable time source for TTL tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 0)} }

var client = netip.MustParseAddr("192.0.2.10")

// quiet keeps membership logs out of test output.
var quiet = slog.New(slog.DiscardHandler)

func addr(port int) pool.Address { return pool.Address{Host: "127.0.0.1", Port: port} }

func register(t *testing.T, p *pool.Pool, ports ...int) {
	t.Helper()
	for _, port := range ports {
		if _, err := p.Register(addr(port), 0); err != nil {
			t.Fatalf("register %d: %v", port, err)
		}
	}
}

// counts maps each backend key to its active count, from Snapshot.
func counts(p *pool.Pool) map[string]int64 {
	m := map[string]int64{}
	for _, s := range p.Snapshot() {
		m[s.Key] = s.Active
	}
	return m
}

func spread(m map[string]int64) int64 {
	lo, hi := int64(1<<62), int64(-1)
	for _, v := range m {
		lo, hi = min(lo, v), max(hi, v)
	}
	return hi - lo
}

func TestConcurrentBurstSpreadsExactly(t *testing.T) {
	for _, policy := range []pool.Policy{pool.LeastConn, pool.P2C} {
		t.Run(policy.Name(), func(t *testing.T) {
			p := &pool.Pool{Policy: policy, Logger: quiet}
			register(t, p, 1, 2, 3, 4, 5)
			const n = 1000
			held := make(chan *pool.Backend, n)
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					b, err := p.Acquire(client, nil)
					if err != nil {
						t.Error(err)
						return
					}
					held <- b
				}()
			}
			wg.Wait()
			close(held)
			c := counts(p)
			if policy == pool.LeastConn && spread(c) > 1 {
				t.Fatalf("held connections spread %v: max-min = %d, want <= 1", c, spread(c))
			}
			for b := range held {
				if err := p.Release(b); err != nil {
					t.Fatal(err)
				}
			}
			for k, v := range counts(p) {
				if v != 0 {
					t.Errorf("%s: count %d after every release, want 0", k, v)
				}
			}
		})
	}
}

func TestSequentialConnectionsRotateOverEqualBackends(t *testing.T) {
	p := &pool.Pool{Logger: quiet}
	register(t, p, 1, 2, 3, 4)
	totals := map[string]int{}
	for i := 0; i < 400; i++ {
		b, err := p.Acquire(client, nil)
		if err != nil {
			t.Fatal(err)
		}
		totals[b.Key()]++
		if err := p.Release(b); err != nil {
			t.Fatal(err)
		}
	}
	for k, n := range totals {
		if n != 100 {
			t.Errorf("%s got %d of 400 sequential connections, want 100 (all: %v)", k, n, totals)
		}
	}
	if len(totals) != 4 {
		t.Errorf("only %d of 4 backends used: %v", len(totals), totals)
	}
}

func TestWeightsScaleShare(t *testing.T) {
	p := &pool.Pool{Logger: quiet}
	if _, err := p.Register(addr(1), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Register(addr(2), 3); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 400; i++ {
		if _, err := p.Acquire(client, nil); err != nil {
			t.Fatal(err)
		}
	}
	c := counts(p)
	if c["127.0.0.1:1"] != 100 || c["127.0.0.1:2"] != 300 {
		t.Fatalf("weights 1:3 over 400 held connections gave %v, want 100 and 300", c)
	}
}

func TestReleaseWithoutAcquireIsReported(t *testing.T) {
	p := &pool.Pool{Logger: quiet}
	register(t, p, 1)
	b, err := p.Acquire(client, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Release(b); err != nil {
		t.Fatal(err)
	}
	if err := p.Release(b); !errors.Is(err, pool.ErrNotAcquired) {
		t.Fatalf("second release: %v, want ErrNotAcquired", err)
	}
	if c := counts(p)["127.0.0.1:1"]; c != 0 {
		t.Fatalf("count %d after a refused release, want 0", c)
	}
}

func TestEmptyPoolHasNoBackend(t *testing.T) {
	p := &pool.Pool{Logger: quiet}
	if _, err := p.Acquire(client, nil); !errors.Is(err, pool.ErrNoBackend) {
		t.Fatalf("Acquire on empty pool: %v, want ErrNoBackend", err)
	}
}

func TestExcludeSkipsFailedBackends(t *testing.T) {
	for _, policy := range []pool.Policy{pool.LeastConn, pool.P2C, pool.Hash} {
		t.Run(policy.Name(), func(t *testing.T) {
			p := &pool.Pool{Policy: policy, Logger: quiet}
			register(t, p, 1, 2, 3)
			var tried []*pool.Backend
			seen := map[string]bool{}
			for i := 0; i < 3; i++ {
				b, err := p.Acquire(client, tried)
				if err != nil {
					t.Fatalf("try %d: %v", i, err)
				}
				if seen[b.Key()] {
					t.Fatalf("try %d picked excluded %s again", i, b.Key())
				}
				seen[b.Key()] = true
				p.Release(b)
				tried = append(tried, b)
			}
			if _, err := p.Acquire(client, tried); !errors.Is(err, pool.ErrNoBackend) {
				t.Fatalf("all excluded: %v, want ErrNoBackend", err)
			}
		})
	}
}

func TestExpiredBackendIsNeverPicked(t *testing.T) {
	clk := newClock()
	p := &pool.Pool{TTL: 10 * time.Second, Now: clk.Now, Logger: quiet}
	register(t, p, 1, 2)
	clk.Advance(6 * time.Second)
	register(t, p, 2) // heartbeat for 2 only
	clk.Advance(6 * time.Second)
	for i := 0; i < 20; i++ {
		b, err := p.Acquire(client, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b.Key() != "127.0.0.1:2" {
			t.Fatalf("picked %s, whose TTL has passed (no sweep ran)", b.Key())
		}
	}
	st := stateOf(p, "127.0.0.1:1")
	if st != pool.StateExpired {
		t.Fatalf("state of expired backend = %q, want expired", st)
	}
}

func stateOf(p *pool.Pool, key string) pool.State {
	for _, s := range p.Snapshot() {
		if s.Key == key {
			return s.State
		}
	}
	return ""
}

func TestExpiredBackendKeepsCountUntilIdleAndRevives(t *testing.T) {
	clk := newClock()
	p := &pool.Pool{TTL: 10 * time.Second, Now: clk.Now, Logger: quiet}
	register(t, p, 1)
	b1, _ := p.Acquire(client, nil)
	b2, _ := p.Acquire(client, nil)
	clk.Advance(11 * time.Second)
	if n := p.Sweep(); n != 0 {
		t.Fatalf("sweep forgot %d backends with live connections", n)
	}
	if c := counts(p)["127.0.0.1:1"]; c != 2 || stateOf(p, "127.0.0.1:1") != pool.StateExpired {
		t.Fatalf("expired backend: count %d state %q, want 2 expired", c, stateOf(p, "127.0.0.1:1"))
	}
	if _, err := p.Acquire(client, nil); !errors.Is(err, pool.ErrNoBackend) {
		t.Fatalf("acquire with only an expired backend: %v", err)
	}
	p.Release(b1)
	register(t, p, 1) // a heartbeat revives it with its live count
	if c, st := counts(p)["127.0.0.1:1"], stateOf(p, "127.0.0.1:1"); c != 1 || st != pool.StateUp {
		t.Fatalf("revived: count %d state %q, want 1 up", c, st)
	}
	p.Release(b2)
	clk.Advance(11 * time.Second)
	if n := p.Sweep(); n != 1 || p.Len() != 0 {
		t.Fatalf("sweep of idle expired backend forgot %d, %d left; want 1, 0", n, p.Len())
	}
}

func TestRemoveKeepsEstablishedAndForgetsWhenIdle(t *testing.T) {
	p := &pool.Pool{Logger: quiet}
	register(t, p, 1, 2)
	b, err := p.Acquire(client, []*pool.Backend{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Deregister(b.Key()); err != nil {
		t.Fatal(err)
	}
	if st := stateOf(p, b.Key()); st != pool.StateRemoved {
		t.Fatalf("state after remove = %q, want removed", st)
	}
	for i := 0; i < 10; i++ {
		nb, _ := p.Acquire(client, nil)
		if nb == b {
			t.Fatal("removed backend picked")
		}
		p.Release(nb)
	}
	if err := p.Deregister(b.Key()); !errors.Is(err, pool.ErrUnknownBackend) {
		t.Fatalf("second remove: %v, want ErrUnknownBackend", err)
	}
	p.Release(b)
	if st := stateOf(p, b.Key()); st != "" {
		t.Fatalf("removed backend still listed as %q after its last connection ended", st)
	}
}

func TestAddBeforeForgetBringsBackLiveCount(t *testing.T) {
	p := &pool.Pool{Logger: quiet}
	register(t, p, 1)
	b, _ := p.Acquire(client, nil)
	p.Deregister(b.Key())
	register(t, p, 1)
	if c, st := counts(p)[b.Key()], stateOf(p, b.Key()); c != 1 || st != pool.StateUp {
		t.Fatalf("re-added: count %d state %q, want 1 up", c, st)
	}
	p.Release(b)
	if c := counts(p)[b.Key()]; c != 0 {
		t.Fatalf("count %d, want 0", c)
	}
}

func TestHeartbeatKeepsCountsAndWeight(t *testing.T) {
	p := &pool.Pool{Logger: quiet}
	if _, err := p.Register(addr(1), 5); err != nil {
		t.Fatal(err)
	}
	b, _ := p.Acquire(client, nil)
	created, err := p.Register(addr(1), 0)
	if err != nil || created {
		t.Fatalf("heartbeat: created=%v err=%v", created, err)
	}
	s := p.Snapshot()[0]
	if s.Active != 1 || s.Total != 1 || s.Weight != 5 {
		t.Fatalf("after heartbeat: %+v, want active 1 total 1 weight 5", s)
	}
	p.Release(b)
	if _, err := p.Register(addr(1), 300); err == nil {
		t.Fatal("weight 300 accepted")
	}
}

func TestStaticBackendsNeverExpire(t *testing.T) {
	clk := newClock()
	p := &pool.Pool{TTL: time.Second, Now: clk.Now, Logger: quiet}
	if err := p.RegisterStatic(addr(1), 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	p.Sweep()
	b, err := p.Acquire(client, nil)
	if err != nil {
		t.Fatalf("static backend after an hour: %v", err)
	}
	p.Release(b)
	if st := stateOf(p, b.Key()); st != pool.StateStatic {
		t.Fatalf("state %q, want static", st)
	}
}

func TestHashKeepsClientsWhenPoolChanges(t *testing.T) {
	p := &pool.Pool{Policy: pool.Hash, Logger: quiet}
	register(t, p, 1, 2, 3, 4, 5)
	clients := make([]netip.Addr, 500)
	before := make([]string, len(clients))
	for i := range clients {
		clients[i] = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		b, err := p.Acquire(clients[i], nil)
		if err != nil {
			t.Fatal(err)
		}
		before[i] = b.Key()
		p.Release(b)
	}
	used := map[string]int{}
	for _, k := range before {
		used[k]++
	}
	if len(used) != 5 {
		t.Fatalf("500 clients landed on %d of 5 backends: %v", len(used), used)
	}
	gone := "127.0.0.1:3"
	if err := p.Deregister(gone); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		b, _ := p.Acquire(c, nil)
		p.Release(b)
		if before[i] != gone && b.Key() != before[i] {
			t.Fatalf("client %s moved from %s to %s although its backend stayed", c, before[i], b.Key())
		}
		if b.Key() == gone {
			t.Fatalf("client %s still sent to removed %s", c, gone)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	for _, name := range []string{"leastconn", "p2c", "hash", "maglev", "roundrobin"} {
		p, err := pool.ParsePolicy(name)
		if err != nil || p.Name() != name {
			t.Errorf("ParsePolicy(%q) = %v, %v", name, p, err)
		}
	}
	if _, err := pool.ParsePolicy("random"); err == nil {
		t.Error("unknown policy accepted")
	}
}

func TestManyBackendsCountsStayExact(t *testing.T) {
	p := &pool.Pool{Logger: quiet}
	for i := 1; i <= 300; i++ {
		register(t, p, i)
	}
	var held []*pool.Backend
	for i := 0; i < 900; i++ {
		b, err := p.Acquire(client, nil)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, b)
	}
	if c := counts(p); spread(c) != 0 {
		t.Fatalf("900 over 300 backends: spread %d, want 0", spread(c))
	}
	for i, b := range held {
		if i%2 == 0 {
			p.Release(b)
		}
	}
	for i, b := range held {
		if i%2 == 1 {
			p.Release(b)
		}
	}
	for k, v := range counts(p) {
		if v != 0 {
			t.Fatal(fmt.Sprintf("%s: %d", k, v))
		}
	}
}

func TestHashFallsBackToLeastConnWhenItsChoiceIsFull(t *testing.T) {
	p := &pool.Pool{Policy: pool.Hash, MaxConnsPerBackend: 1, Logger: quiet}
	register(t, p, 1, 2, 3)
	first, err := p.Acquire(client, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Load one other backend so that least connections has a single right answer.
	var other *pool.Backend
	for _, s := range p.Snapshot() {
		if s.Key != first.Key() {
			other, _ = p.Acquire(netip.Addr{}, []*pool.Backend{first})
			break
		}
	}
	second, err := p.Acquire(client, nil)
	if err != nil {
		t.Fatal(err)
	}
	if second == first || second == other {
		t.Fatalf("hash choice full: got %s, want the least loaded backend (not %s or %s)", second.Key(), first.Key(), other.Key())
	}
	for _, b := range []*pool.Backend{first, other, second} {
		p.Release(b)
	}
	again, _ := p.Acquire(client, nil)
	if again != first {
		t.Fatalf("after the full backend freed up the client went to %s, want %s", again.Key(), first.Key())
	}
	p.Release(again)
}
