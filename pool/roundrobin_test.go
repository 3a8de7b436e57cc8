package pool_test

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fulcrumlb/fulcrum/pool"
)

// rrPool is a round-robin pool of static backends on ports 1, 2... with the weights given.
func rrPool(t *testing.T, weights ...int) *pool.Pool {
	t.Helper()
	p := &pool.Pool{Policy: pool.RoundRobin, Logger: quiet}
	for i, w := range weights {
		if err := p.RegisterStatic(addr(i+1), w); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// rrPicks makes n sequential connections (each released before the next) and returns the
// port each went to.
func rrPicks(t *testing.T, p *pool.Pool, n int) []int {
	t.Helper()
	out := make([]int, n)
	for i := range out {
		b, err := p.Acquire(client, nil)
		if err != nil {
			t.Fatalf("pick %d: %v", i, err)
		}
		out[i] = b.Address().Port
		if err := p.Release(b); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func countPorts(picks []int) map[int]int {
	n := map[int]int{}
	for _, port := range picks {
		n[port]++
	}
	return n
}

// nginxSWRR is the plain algorithm over backends listed in order: every current grows by its
// weight, the first largest is chosen, and its current drops by the total.
func nginxSWRR(weights []int, order []int, n int) []int {
	cur := make([]int, len(order))
	total := 0
	for _, i := range order {
		total += weights[i]
	}
	out := make([]int, n)
	for k := range out {
		best := -1
		for j, i := range order {
			cur[j] += weights[i]
			if best < 0 || cur[j] > cur[best] {
				best = j
			}
		}
		cur[best] -= total
		out[k] = order[best] + 1
	}
	return out
}

// heaviestFirst lists backend indices by weight, heaviest first, in registration order among
// equals: the order round robin's sequence follows.
func heaviestFirst(weights []int) []int {
	order := make([]int, len(weights))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(weights[b], weights[a]) })
	return order
}

// TestRoundRobinSmoothSequence: the picks are nginx's smooth weighted round robin, spread
// out and not in bursts.
func TestRoundRobinSmoothSequence(t *testing.T) {
	for _, tc := range []struct {
		weights []int
		want    []int
	}{
		{[]int{1, 2}, []int{2, 1, 2, 2, 1, 2}},
		{[]int{5, 1, 1}, []int{1, 1, 2, 1, 3, 1, 1}},
		{[]int{1, 1, 2}, []int{3, 1, 2, 3, 3, 1, 2, 3}},
		{[]int{1, 1, 1}, []int{1, 2, 3, 1, 2, 3}},
	} {
		t.Run(fmt.Sprint(tc.weights), func(t *testing.T) {
			if got := rrPicks(t, rrPool(t, tc.weights...), len(tc.want)); !slices.Equal(got, tc.want) {
				t.Errorf("picks %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRoundRobinExactSplit: 30 sequential connections to weights 1 and 2 go 10 and 20, where
// least connections splits them evenly.
func TestRoundRobinExactSplit(t *testing.T) {
	got := countPorts(rrPicks(t, rrPool(t, 1, 2), 30))
	if got[1] != 10 || got[2] != 20 {
		t.Errorf("30 connections split %v, want 10 to weight 1 and 20 to weight 2", got)
	}
}

// TestRoundRobinMatchesNginx compares whole sequences with the plain O(n) algorithm, for
// random weights, many of them equal: every run of picks as long as the total weight gives
// each backend exactly its weight.
func TestRoundRobinMatchesNginx(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		weights := make([]int, 1+rng.IntN(12))
		total := 0
		for i := range weights {
			weights[i] = 1 + rng.IntN(5)
			total += weights[i]
		}
		got := rrPicks(t, rrPool(t, weights...), 3*total)
		if want := nginxSWRR(weights, heaviestFirst(weights), 3*total); !slices.Equal(got, want) {
			t.Fatalf("round %d, weights %v:\n got %v\nwant %v", round, weights, got, want)
		}
		for cycle := range 3 {
			n := countPorts(got[cycle*total : (cycle+1)*total])
			for i, w := range weights {
				if n[i+1] != w {
					t.Fatalf("weights %v, cycle %d: backend %d picked %d times, want %d", weights, cycle, i+1, n[i+1], w)
				}
			}
		}
	}
}

// TestRoundRobinSkipsUnpickable: a drained, down or full backend leaves the schedule, and the
// others share the picks exactly by their weights meanwhile; back, it has its share again.
func TestRoundRobinSkipsUnpickable(t *testing.T) {
	t.Run("drained", func(t *testing.T) {
		p := rrPool(t, 1, 1, 2)
		rrPicks(t, p, 5) // mid-round
		if err := p.Drain(addr(1).Key()); err != nil {
			t.Fatal(err)
		}
		rrPicks(t, p, 3) // the round it left settles
		if n := countPorts(rrPicks(t, p, 30)); n[1] != 0 || n[2] != 10 || n[3] != 20 {
			t.Errorf("drained 1: split %v, want 0, 10, 20", n)
		}
		if err := p.Undrain(addr(1).Key()); err != nil {
			t.Fatal(err)
		}
		rrPicks(t, p, 4)
		if n := countPorts(rrPicks(t, p, 40)); n[1] != 10 || n[2] != 10 || n[3] != 20 {
			t.Errorf("undrained: split %v, want 10, 10, 20", n)
		}
	})
	t.Run("full", func(t *testing.T) {
		p := rrPool(t, 1, 2, 1)
		p.MaxConnsPerBackend = 1
		held, err := p.Acquire(client, nil) // backend 2, the heaviest, now full
		if err != nil || held.Address().Port != 2 {
			t.Fatalf("first pick %v, %v; want backend 2", held, err)
		}
		if n := countPorts(rrPicks(t, p, 20)); n[1] != 10 || n[3] != 10 || n[2] != 0 {
			t.Errorf("2 full: split %v, want 10 and 10", n)
		}
		if err := p.Release(held); err != nil {
			t.Fatal(err)
		}
		rrPicks(t, p, 4)
		if n := countPorts(rrPicks(t, p, 40)); n[1] != 10 || n[2] != 20 || n[3] != 10 {
			t.Errorf("2 free again: split %v, want 10, 20, 10", n)
		}
	})
	t.Run("excluded after a failed dial", func(t *testing.T) {
		p := rrPool(t, 1, 2)
		first, err := p.Acquire(client, nil)
		if err != nil {
			t.Fatal(err)
		}
		p.Release(first)
		retry, err := p.Acquire(client, []*pool.Backend{first})
		if err != nil || retry == first {
			t.Fatalf("retry excluding %s got %v, %v", first.Key(), retry, err)
		}
		p.Release(retry)
	})
}

// TestRoundRobinWeightChange: a heartbeat that changes a weight moves the backend to its new
// share.
func TestRoundRobinWeightChange(t *testing.T) {
	p := &pool.Pool{Policy: pool.RoundRobin, Logger: quiet}
	for _, port := range []int{1, 2} {
		if _, err := p.Register(addr(port), 1); err != nil {
			t.Fatal(err)
		}
	}
	rrPicks(t, p, 2)
	if _, err := p.Heartbeat(addr(2).Key(), 3); err != nil {
		t.Fatal(err)
	}
	rrPicks(t, p, 4)
	if n := countPorts(rrPicks(t, p, 40)); n[1] != 10 || n[2] != 30 {
		t.Errorf("weights 1 and 3: split %v, want 10 and 30", n)
	}
}

func TestParsePolicyRoundRobin(t *testing.T) {
	p, err := pool.ParsePolicy("roundrobin")
	if err != nil || p != pool.RoundRobin || p.Name() != "roundrobin" {
		t.Errorf("ParsePolicy(roundrobin) = %v, %v", p, err)
	}
}
