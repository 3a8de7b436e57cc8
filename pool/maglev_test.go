package pool_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// maglevPool returns a Maglev pool over backends 127.0.0.1:1 .. :n of weight 1, with its
// table built.
func maglevPool(t *testing.T, n int) *pool.Pool {
	t.Helper()
	p := &pool.Pool{Policy: pool.Maglev, Logger: quiet}
	for port := 1; port <= n; port++ {
		register(t, p, port)
	}
	waitTable(t, p)
	return p
}

func waitTable(t *testing.T, p *pool.Pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.WaitTable(ctx); err != nil {
		t.Fatal(err)
	}
}

// clientAddr is the i-th synthetic client address.
func clientAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(10 + i>>24), byte(i >> 16), byte(i >> 8), byte(i)})
}

// homes picks once for each of n clients, releasing at once, and returns each one's backend.
func homes(t *testing.T, p *pool.Pool, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		b, err := p.Acquire(clientAddr(i), nil)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		out[i] = b.Key()
		if err := p.Release(b); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestParsePolicyMaglev(t *testing.T) {
	p, err := pool.ParsePolicy("maglev")
	if err != nil || p != pool.Maglev || p.Name() != "maglev" {
		t.Fatalf("ParsePolicy(maglev) = %v, %v", p, err)
	}
}

func TestMaglevEmptyPoolHasNoBackend(t *testing.T) {
	p := maglevPool(t, 2)
	for _, key := range []string{"127.0.0.1:1", "127.0.0.1:2"} {
		if err := p.Deregister(key); err != nil {
			t.Fatal(err)
		}
	}
	waitTable(t, p)
	if _, err := p.Acquire(client, nil); !errors.Is(err, pool.ErrNoBackend) {
		t.Fatalf("Acquire with every backend removed: %v, want ErrNoBackend", err)
	}
}

// TestMaglevSticky: while membership is unchanged a client always gets the same backend,
// whatever the load, and a rebuild over the same members gives the same table.
func TestMaglevSticky(t *testing.T) {
	p := maglevPool(t, 5)
	const clients = 2000
	first := homes(t, p, clients)
	// Load the pool unevenly: least connections would now choose differently.
	var held []*pool.Backend
	for i := 0; i < 300; i++ {
		b, err := p.Acquire(clientAddr(i%7), nil)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, b)
	}
	if got := homes(t, p, clients); !equalHomes(first, got) {
		t.Fatal("clients moved under load with membership unchanged")
	}
	// A weight changed and changed back: two rebuilds ending with the same members.
	for _, w := range []int{7, 1} {
		if _, err := p.Register(addr(3), w); err != nil {
			t.Fatal(err)
		}
		waitTable(t, p)
	}
	if got := homes(t, p, clients); !equalHomes(first, got) {
		t.Fatal("clients moved after a rebuild over the same members and weights")
	}
	for _, b := range held {
		p.Release(b)
	}
}

func equalHomes(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}

// TestMaglevSpreadsByWeight: many client addresses spread over the backends in proportion to
// their weights.
func TestMaglevSpreadsByWeight(t *testing.T) {
	p := &pool.Pool{Policy: pool.Maglev, Logger: quiet}
	weights := map[string]int{}
	total := 0
	for port, w := range []int{1, 2, 3, 4, 10} {
		if _, err := p.Register(addr(port+1), w); err != nil {
			t.Fatal(err)
		}
		weights[addr(port+1).Key()] = w
		total += w
	}
	waitTable(t, p)
	const clients = 100_000
	got := map[string]int{}
	for _, k := range homes(t, p, clients) {
		got[k]++
	}
	for k, w := range weights {
		want := float64(clients) * float64(w) / float64(total)
		if d := float64(got[k])/want - 1; d > 0.05 || d < -0.05 {
			t.Errorf("%s (weight %d) got %d clients, want %.0f ±5%%", k, w, got[k], want)
		}
	}
	t.Logf("clients per backend: %v", got)
}

// TestMaglevDisruption: removing one of N backends moves its clients and only a small
// fraction of the others'; adding it back moves clients mostly onto it.
func TestMaglevDisruption(t *testing.T) {
	for _, n := range []int{8, 100, 10_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			if n > 1000 && testing.Short() {
				t.Skip("10,000 backends in -short")
			}
			p := maglevPool(t, n)
			const clients = 100_000
			before := homes(t, p, clients)
			gone := addr(n / 2).Key()
			if err := p.Deregister(gone); err != nil {
				t.Fatal(err)
			}
			waitTable(t, p)
			after := homes(t, p, clients)
			moved, others := 0, 0
			for i := range before {
				switch {
				case after[i] == gone:
					t.Fatalf("client %d still sent to removed %s", i, gone)
				case before[i] == gone:
				case after[i] != before[i]:
					moved, others = moved+1, others+1
				default:
					others++
				}
			}
			frac := float64(moved) / float64(others)
			t.Logf("N=%d: removing one backend moved %d of the other backends' %d clients (%.3f%%)", n, moved, others, 100*frac)
			if frac > 0.05 {
				t.Errorf("removing one of %d backends moved %.2f%% of the others' clients, want <= 5%%", n, 100*frac)
			}
			register(t, p, n/2)
			waitTable(t, p)
			back := homes(t, p, clients)
			stray := 0
			for i := range after {
				if back[i] != after[i] && back[i] != gone {
					stray++
				}
			}
			t.Logf("N=%d: adding it back moved %d clients elsewhere than onto it (%.3f%%)", n, stray, 100*float64(stray)/clients)
			if float64(stray)/clients > 0.05 {
				t.Errorf("adding one of %d backends moved %d clients between the others", n, stray)
			}
		})
	}
}

// TestMaglevFallsBackToLeastConn: when a client's backend cannot take its connection the
// client goes to the least loaded other backend, and comes back when it can again.
func TestMaglevFallsBackToLeastConn(t *testing.T) {
	refused := fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	cases := []struct {
		name  string
		limit int
		// block makes home unable to take c's connection; it returns what to exclude and how
		// to undo it.
		block func(t *testing.T, p *pool.Pool, home *pool.Backend) (exclude []*pool.Backend, undo func())
	}{
		{"full", 1, func(t *testing.T, p *pool.Pool, home *pool.Backend) ([]*pool.Backend, func()) {
			b, err := p.Acquire(client, nil)
			if err != nil || b != home {
				t.Fatalf("filling home: got %v, %v", b, err)
			}
			return nil, func() { p.Release(b) }
		}},
		{"down", 0, func(t *testing.T, p *pool.Pool, home *pool.Backend) ([]*pool.Backend, func()) {
			b, _ := p.Acquire(client, nil)
			p.ReportDial(b, refused)
			p.Release(b)
			return nil, func() { p.ReportCheck(home, nil) }
		}},
		{"draining", 0, func(t *testing.T, p *pool.Pool, home *pool.Backend) ([]*pool.Backend, func()) {
			if err := p.Drain(home.Key()); err != nil {
				t.Fatal(err)
			}
			return nil, func() { p.Undrain(home.Key()) }
		}},
		{"excluded", 0, func(t *testing.T, p *pool.Pool, home *pool.Backend) ([]*pool.Backend, func()) {
			return []*pool.Backend{home}, func() {}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &pool.Pool{Policy: pool.Maglev, MaxConnsPerBackend: tc.limit, Logger: quiet}
			register(t, p, 1, 2, 3)
			waitTable(t, p)
			home, err := p.Acquire(client, nil)
			if err != nil {
				t.Fatal(err)
			}
			p.Release(home)
			before := homes(t, p, 500)
			// Load one of the two others, so that least connections has one right answer.
			loaded := holdOn(t, p, home)
			exclude, undo := tc.block(t, p, home)
			waitTable(t, p)
			for i, k := range homes(t, p, 500) {
				if old := before[i]; old != home.Key() && old != loaded.Key() && k != old {
					t.Fatalf("client %d moved from %s to %s while %s was blocked", i, old, k, home.Key())
				}
			}
			b, err := p.Acquire(client, exclude)
			if err != nil {
				t.Fatal(err)
			}
			if b == home || b == loaded {
				t.Fatalf("home %s blocked: got %s, want the least loaded other (not %s)", home.Key(), b.Key(), loaded.Key())
			}
			p.Release(b)
			undo()
			if b, _ := p.Acquire(client, nil); b != home {
				t.Fatalf("home unblocked: got %v, want %s", b, home.Key())
			} else {
				p.Release(b)
			}
			p.Release(loaded)
		})
	}
}

// holdOn holds one connection on a backend other than home, from a client whose own home it
// is, and returns that backend.
func holdOn(t *testing.T, p *pool.Pool, home *pool.Backend) *pool.Backend {
	t.Helper()
	for i := 0; i < 1000; i++ {
		b, err := p.Acquire(clientAddr(i), nil)
		if err != nil {
			t.Fatal(err)
		}
		if b != home {
			return b
		}
		p.Release(b)
	}
	t.Fatal("no client of another backend among 1000")
	return nil
}

// TestMaglevExpiredBackendLeavesTable: a backend that misses its heartbeats stops getting its
// clients at once, and the next table leaves it out.
func TestMaglevExpiredBackendLeavesTable(t *testing.T) {
	clk := newClock()
	p := &pool.Pool{Policy: pool.Maglev, TTL: 10 * time.Second, Now: clk.Now, Logger: quiet}
	register(t, p, 1, 2, 3)
	waitTable(t, p)
	before := homes(t, p, 3000)
	gone := before[0]
	clk.Advance(6 * time.Second)
	for _, port := range []int{1, 2, 3} {
		if addr(port).Key() != gone {
			register(t, p, port)
		}
	}
	clk.Advance(6 * time.Second) // gone's TTL has passed; no sweep runs
	homes(t, p, 3000)            // picks meet it expired: they fall back, and start a rebuild
	waitTable(t, p)
	after := homes(t, p, 3000)
	moved := 0
	for i := range before {
		switch {
		case after[i] == gone:
			t.Fatalf("client %d sent to expired %s", i, gone)
		case before[i] != gone && after[i] != before[i]:
			moved++
		}
	}
	if moved > 3000/20 {
		t.Fatalf("expiry of one backend moved %d of 3000 clients of the others", moved)
	}
	if got := homes(t, p, 3000); !equalHomes(after, got) {
		t.Fatal("clients of the expired backend are not sticky after the rebuild")
	}
}

// TestMaglevRebuildsAfterWeightChange: a new weight reaches the table and the share follows.
func TestMaglevRebuildsAfterWeightChange(t *testing.T) {
	p := maglevPool(t, 2)
	const clients = 20_000
	share := func() float64 {
		n := 0
		for _, k := range homes(t, p, clients) {
			if k == addr(1).Key() {
				n++
			}
		}
		return float64(n) / clients
	}
	if s := share(); s < 0.45 || s > 0.55 {
		t.Fatalf("weights 1:1 gave backend 1 a share of %.3f", s)
	}
	if _, err := p.Register(addr(1), 3); err != nil {
		t.Fatal(err)
	}
	waitTable(t, p)
	if s := share(); s < 0.72 || s > 0.78 {
		t.Fatalf("weights 3:1 gave backend 1 a share of %.3f, want 0.75", s)
	}
}

// TestMaglevConcurrentChurn runs picks and releases against registrations, removals and
// drains; under -race it checks the builder shares nothing unguarded, and every count ends
// at zero.
func TestMaglevConcurrentChurn(t *testing.T) {
	p := maglevPool(t, 20)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				b, err := p.Acquire(clientAddr(rand.IntN(1000)), nil)
				if errors.Is(err, pool.ErrNoBackend) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				if err := p.Release(b); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := 0; i < 200; i++ {
		port := 1 + rand.IntN(30)
		switch i % 4 {
		case 0:
			p.Deregister(addr(port).Key())
		case 1:
			p.Register(addr(port), 1+rand.IntN(4))
		case 2:
			p.Drain(addr(port).Key())
		case 3:
			p.Undrain(addr(port).Key())
		}
	}
	close(stop)
	wg.Wait()
	waitTable(t, p)
	for k, v := range counts(p) {
		if v != 0 {
			t.Errorf("%s: count %d after every release, want 0", k, v)
		}
	}
}

// TestMaglevFallBackInLargePool: beyond 64 live backends the fall-back is p2c: a drained
// backend's client is spread over the others, never sent to it, and comes back after.
func TestMaglevFallBackInLargePool(t *testing.T) {
	p := maglevPool(t, 200)
	home, err := p.Acquire(client, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Release(home)
	if err := p.Drain(home.Key()); err != nil {
		t.Fatal(err)
	}
	var held []*pool.Backend
	used := map[*pool.Backend]int{}
	for i := 0; i < 100; i++ {
		b, err := p.Acquire(client, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b == home {
			t.Fatalf("pick %d went to drained %s", i, home.Key())
		}
		used[b]++
		held = append(held, b)
	}
	for b, n := range used {
		if n > 3 {
			t.Errorf("%s took %d of 100 fall-back connections: two random choices should spread them", b.Key(), n)
		}
	}
	for _, b := range held {
		p.Release(b)
	}
	p.Undrain(home.Key())
	if b, _ := p.Acquire(client, nil); b != home {
		t.Fatalf("after undrain: %v, want %s", b, home.Key())
	} else {
		p.Release(b)
	}
}
