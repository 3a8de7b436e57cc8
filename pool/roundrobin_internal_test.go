package pool

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// checkSchedule: every live backend is a member of its weight's class exactly once, at the
// slot it records, no other backend is, and the total is the sum of the members' weights.
func checkSchedule(t *testing.T, p *Pool) {
	t.Helper()
	r := p.live.rr
	var total int64
	members := map[*Backend]bool{}
	for _, cl := range r.classes {
		if len(cl.members) > 0 && cl.cursor >= len(cl.members) || cl.cursor < 0 {
			t.Fatalf("class %d: cursor %d of %d members", cl.weight, cl.cursor, len(cl.members))
		}
		for i, b := range cl.members {
			if members[b] || int(b.rrSlot) != i || int64(b.weight) != cl.weight || b.index < 0 {
				t.Fatalf("class %d slot %d: %s (slot %d, weight %d, live %v, twice %v)", cl.weight, i, b.key, b.rrSlot, b.weight, b.index >= 0, members[b])
			}
			members[b] = true
			total += cl.weight
		}
	}
	if len(members) != len(p.live.items) || total != r.total {
		t.Fatalf("%d members for %d live backends; total %d, want %d", len(members), len(p.live.items), r.total, total)
	}
}

// TestRoundRobinScheduleUnderChurn drains, undrains, reweighs and fills backends at random
// between picks, and checks the schedule's bookkeeping after every step.
func TestRoundRobinScheduleUnderChurn(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	p := &Pool{Policy: RoundRobin, Logger: quiet, MaxConnsPerBackend: 2}
	var keys []string
	for i := range 12 {
		a := Address{Host: fmt.Sprintf("10.0.0.%d", i+1), Port: 80}
		if _, err := p.Register(a, 1+i%4); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, a.Key())
	}
	var held []*Backend
	client := netip.MustParseAddr("192.0.2.1")
	for step := range 5000 {
		switch k := keys[rng.IntN(len(keys))]; rng.IntN(6) {
		case 0:
			p.Drain(k)
		case 1:
			p.Undrain(k)
		case 2:
			p.Heartbeat(k, 1+rng.IntN(4))
		case 3:
			if len(held) > 0 {
				i := rng.IntN(len(held))
				if err := p.Release(held[i]); err != nil {
					t.Fatal(err)
				}
				held = append(held[:i], held[i+1:]...)
			}
		default:
			if b, err := p.Acquire(client, nil); err == nil {
				held = append(held, b)
			}
		}
		if p.live.rr != nil {
			checkSchedule(t, p)
		} else if step > 100 {
			t.Fatal("no schedule after many picks")
		}
	}
}
