package pool

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// tableMembersOf returns n backends 10.x.y.z:80 with the given weights, cycled.
func tableMembersOf(n int, weights ...int) []maglevMember {
	ms := make([]maglevMember, n)
	for i := range ms {
		a := Address{Host: fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255), Port: 80}
		w := weights[i%len(weights)]
		ms[i] = maglevMember{b: newBackend(a, w, true, time.Time{}), weight: w}
	}
	return ms
}

// TestMaglevSlotsFollowWeights: every member's share of the slots is its weight's share, to
// within one round of turns.
func TestMaglevSlotsFollowWeights(t *testing.T) {
	for _, weights := range [][]int{{1}, {1, 2, 3}, {1, 256}, {5, 5, 7}} {
		t.Run(fmt.Sprint(weights), func(t *testing.T) {
			ms := tableMembersOf(30, weights...)
			total := 0
			for _, m := range ms {
				total += m.weight
			}
			size := maglevSize(len(ms), 0)
			tab := buildMaglev(ms, size)
			got := map[*Backend]int{}
			for _, s := range tab.slots {
				got[tab.backends[s]]++
			}
			for _, m := range ms {
				want := float64(size) * float64(m.weight) / float64(total)
				if d := float64(got[m.b]) - want; d > 1+float64(m.weight) || d < -1-float64(m.weight) {
					t.Errorf("%s (weight %d): %d slots, want %.1f", m.b.key, m.weight, got[m.b], want)
				}
			}
		})
	}
}

// TestMaglevSizeKeepsThroughSmallChanges: one backend joining or leaving never changes the
// size, at any pool size; the size grows before a member has fewer than 40 slots and is prime.
func TestMaglevSizeKeepsThroughSmallChanges(t *testing.T) {
	if maglevSize(1, 0) != 65537 || maglevSize(1310, 0) != 65537 {
		t.Fatalf("small pools: sizes %d, %d, want 65537", maglevSize(1, 0), maglevSize(1310, 0))
	}
	cur := uint64(0)
	resized := 0
	for n := 1; n <= 200_000; n += 1 + n/50 {
		size := maglevSize(n, cur)
		if cur != 0 && size != cur {
			resized++
			if maglevSize(n-1, size) != size || maglevSize(n+1, size) != size {
				t.Fatalf("n=%d: a size chosen at a boundary flips back on one change", n)
			}
		}
		if size < maglevPerKeep*uint64(n) {
			t.Fatalf("n=%d: size %d gives fewer than %d slots each", n, size, maglevPerKeep)
		}
		cur = size
	}
	if resized > 12 {
		t.Fatalf("growing to 200,000 members resized the table %d times", resized)
	}
	// Shrinking: kept until a fresh table would be an eighth of it.
	big := maglevSize(100_000, 0)
	if maglevSize(50_000, big) != big || maglevSize(1000, big) == big {
		t.Fatalf("shrinking from 100,000 members: kept at 50,000: %v, dropped at 1,000: %v",
			maglevSize(50_000, big) == big, maglevSize(1000, big) != big)
	}
}

// TestLiveHeapOrderSwitch: a live set kept unordered for p2c becomes a valid heap again when
// a policy needs order.
func TestLiveHeapOrderSwitch(t *testing.T) {
	var h liveHeap
	h.setOrdered(false)
	for i := range 200 {
		b := newBackend(Address{Host: "10.0.0.1", Port: i + 1}, 1+i%5, true, time.Time{})
		b.active = int64((i * 7919) % 37)
		h.push(b)
	}
	h.remove(h.items[17])
	h.setOrdered(true)
	for i, b := range h.items {
		if b.index != i {
			t.Fatalf("item %d thinks it is at %d", i, b.index)
		}
		if i > 0 && lighter(b, h.items[(i-1)/2]) {
			t.Fatalf("item %d is lighter than its parent: not a heap", i)
		}
	}
}

// TestMaglevTableMatchesRegistryAfterChurn: the member list is copied in batches with the lock
// let go in between; changes made meanwhile still reach the table, which ends with exactly
// the registered backends.
func TestMaglevTableMatchesRegistryAfterChurn(t *testing.T) {
	p := &Pool{Policy: Maglev, Logger: quiet}
	at := func(i int) Address { return Address{Host: fmt.Sprintf("10.0.%d.%d", i>>8, i&255), Port: 80} }
	const n = 3 * memberBatch
	for i := range n {
		if _, err := p.Register(at(i), 1); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() { // changes racing the builder's batched copies
		defer close(done)
		for i := range 300 {
			p.Deregister(at(i).Key())
			p.Register(at(n+i), 2)
		}
	}()
	for range 50 {
		p.Acquire(netip.AddrFrom4([4]byte{192, 0, 2, 1}), nil) // picks waiting between batches
	}
	<-done
	if err := p.WaitTable(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	inTable := map[*Backend]bool{}
	for _, b := range p.ring.table.backends {
		inTable[b] = true
	}
	for key, b := range p.backends {
		if want := !b.removed; inTable[b] != want {
			t.Errorf("%s: in table %v, registered %v", key, inTable[b], want)
		}
	}
	if len(inTable) != n {
		t.Errorf("table has %d members, want %d", len(inTable), n)
	}
}
