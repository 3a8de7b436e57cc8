package pool

import (
	"cmp"
	"math/big"
	"math/bits"
	"net/netip"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// maglev is consistent hashing by lookup table, as described by Eisenbud et al. ("Maglev",
// NSDI 2016). Each member backend ranks every slot of a prime-sized table in its own order
// (a permutation drawn from two hashes of its key); the members take turns, in proportion to
// their weights, claiming the next free slot on their list until the table is full. A pick
// hashes the client address to a slot and reads its backend: O(1) however large the pool.
//
// The members are the backends that are registered: up or static, neither removed nor
// expired. A backend that is down, draining or at its connection limit stays a member: that
// is temporary, and rebuilding would move clients of other backends twice, once when it
// leaves and once when it returns. Its clients fall back meanwhile (fallBack), and go back
// to it when it can take connections again.
//
// The table is built from configured weights; slow start ramps only the fall-back's share.
type maglev struct{}

func (maglev) Name() string { return "maglev" }

// ordered is false: no heap is kept, as for p2c. Keeping one costs every pick and release
// a sift among other backends' counts, about 300 ns at 100,000 backends (a third of the
// pick), for a fall-back that healthy pools seldom take.
func (maglev) ordered() bool { return false }

func (m maglev) pick(c *candidates, client netip.Addr) *Backend {
	if c.table == nil { // no member yet, or the first table is still being built
		return m.fallBack(c, client)
	}
	b := c.table.lookup(clientHash(client))
	if b.index < 0 || !c.usable(b) { // full, down, draining, removed, expired or excluded
		return m.fallBack(c, client)
	}
	return b
}

// exactFallBack is the largest live set in which fallBack finds the least loaded backend.
const exactFallBack = 64

// fallBack places a connection whose table choice cannot take it. Up to exactFallBack live
// backends it takes the least loaded usable one, as Hash does; in larger pools it takes the
// lighter of two random live backends (p2c), which stays O(1) where an exact answer without
// a heap would cost a scan of the pool.
func (maglev) fallBack(c *candidates, client netip.Addr) *Backend {
	if len(c.live.items) <= exactFallBack {
		return c.lightest()
	}
	return powerOfTwo{}.pick(c, client)
}

// maglevTable is one built lookup table. It is never modified once built, so a table can be
// replaced whole while picks still hold the old one.
type maglevTable struct {
	slots    []uint32   // slot → index in backends; 4 bytes a slot, and nothing for the GC to scan
	backends []*Backend // the members, in turn order
}

// lookup returns the backend of the slot that h falls in. The slot is h scaled to the table
// size (the high word of h×size), which is as even as h mod size and needs no division.
func (t *maglevTable) lookup(h uint64) *Backend {
	slot, _ := bits.Mul64(h, uint64(len(t.slots)))
	return t.backends[t.slots[slot]]
}

// Table sizes are rungs of a ladder, the smallest prime at least 65,537×2^k, and a pool takes
// the smallest rung that gives each member at least 50 slots: a member's share of the slots is
// then within 2% of its weight's share (rounding a share to a whole slot is what skews it).
// How many clients move when a member leaves hardly depends on the size: at 1,000 members,
// 0.5-0.7% of the others' clients whether each member has 25 or 200 slots.
// Changing the size moves nearly every client, so a table keeps its size while membership
// moves within a wide band: until its members would get fewer than 40 slots each, or the pool
// has shrunk until a fresh size would be an eighth of it.
//
// At 100,000 members the table is 8,388,739 slots: 32 MiB, and a build allocates 5 MiB more
// that it drops at the end (bitmap, permutations, member lists). The old table is garbage once
// the new one is published.
const (
	maglevFloor   = 65537 // rung 0, the default table size of Maglev and Envoy
	maglevPerWant = 50    // slots per member a fresh size gives at least
	maglevPerKeep = 40    // slots per member below which a table grows
	maglevShrink  = 8     // a table shrinks when it is this many times the fresh size
)

// maglevSize returns the table size for n members when the current table has cur slots (0 when
// there is none).
func maglevSize(n int, cur uint64) uint64 {
	fresh := uint64(maglevFloor)
	for k := 0; fresh < maglevPerWant*uint64(n); k++ {
		fresh = maglevRung(k + 1)
	}
	if cur >= maglevPerKeep*uint64(n) && cur < maglevShrink*fresh {
		return cur
	}
	return fresh
}

// maglevRung is the smallest prime at least maglevFloor×2^k. A prime size lets every skip
// visit every slot.
func maglevRung(k int) uint64 {
	m := uint64(maglevFloor) << k
	for !new(big.Int).SetUint64(m).ProbablyPrime(0) { // exact below 2^64
		m++
	}
	return m
}

// maglevMember is one backend as a table is built from it: read under Pool.mu, used after.
type maglevMember struct {
	b      *Backend
	weight int
}

// buildMaglev builds a table of size slots (a prime) for members (it sorts them); nil when
// there are none. It reads only what does not change once a backend exists (key, hash), so it
// runs without Pool.mu.
func buildMaglev(members []maglevMember, size uint64) *maglevTable {
	if len(members) == 0 {
		return nil
	}
	// Turn order must not depend on map order or arrival, or a rebuild with the same members
	// would move clients.
	slices.SortFunc(members, func(x, y maglevMember) int {
		return cmp.Or(cmp.Compare(x.b.hash, y.b.hash), strings.Compare(x.b.key, y.b.key))
	})
	t := &maglevTable{slots: make([]uint32, size), backends: make([]*Backend, len(members))}
	perms := make([]permutation, len(members))
	var d xxhash.Digest
	for i, m := range members {
		t.backends[i] = m.b
		perms[i] = newPermutation(m.b, size, &d)
	}
	f := filler{slots: t.slots, taken: make([]uint64, (size+63)/64), perms: perms}
	f.fill(weightClasses(members))
	return t
}

// skipSeed seeds the second hash of a key, so that a backend's skip is independent of its
// offset (the first hash, Backend.hash).
const skipSeed = 0x6d61676c6576 // "maglev"

// permutation walks one member's preference list: offset, offset+skip, offset+2·skip, ...
// modulo the table size. The size is prime and 0 < skip < size, so the list holds every slot
// once.
type permutation struct {
	next, skip uint64
}

func newPermutation(b *Backend, size uint64, d *xxhash.Digest) permutation {
	d.ResetWithSeed(skipSeed)
	d.WriteString(b.key)
	return permutation{next: b.hash % size, skip: d.Sum64()%(size-1) + 1}
}

// weightClass is the members of one weight, by index in turn order.
type weightClass struct {
	weight  int
	members []uint32
}

// weightClasses groups sorted members by weight, heaviest first. Members of equal weight take
// their turns together, so that a round costs one step per class plus one per turn taken,
// however many light members are waiting for their next turn.
func weightClasses(members []maglevMember) []weightClass {
	byWeight := map[int][]uint32{}
	for i, m := range members {
		byWeight[m.weight] = append(byWeight[m.weight], uint32(i))
	}
	classes := make([]weightClass, 0, len(byWeight))
	for w, idx := range byWeight {
		classes = append(classes, weightClass{weight: w, members: idx})
	}
	slices.SortFunc(classes, func(x, y weightClass) int { return cmp.Compare(y.weight, x.weight) })
	return classes
}

// filler fills a table's slots. Whether a slot is taken is kept in a bitmap apart from the
// slots: a member passes over many taken slots before it finds a free one, and the bitmap,
// 32 times smaller than the table, stays in cache where the table does not.
type filler struct {
	slots []uint32
	taken []uint64
	perms []permutation
}

// fill lets the members take turns claiming slots until none is free. Over every maxWeight
// rounds a class of weight w takes w turns, spread evenly, so each member ends with a share of
// the slots in proportion to its weight.
func (f *filler) fill(classes []weightClass) {
	maxWeight := classes[0].weight
	left := len(f.slots)
	for round := 0; ; round++ {
		for _, c := range classes {
			if (round+1)*c.weight/maxWeight == round*c.weight/maxWeight {
				continue // not this class's turn in this round
			}
			for _, i := range c.members {
				f.claim(i)
				if left--; left == 0 {
					return
				}
			}
		}
	}
}

// claim gives member i the first free slot left on its list. This loop is nearly all of a
// build's time, hence the locals.
func (f *filler) claim(i uint32) {
	p := &f.perms[i]
	next, skip, size, taken := p.next, p.skip, uint64(len(f.slots)), f.taken
	for taken[next>>6]&(1<<(next&63)) != 0 {
		if next += skip; next >= size {
			next -= size
		}
	}
	taken[next>>6] |= 1 << (next & 63)
	f.slots[next] = i
	if next += skip; next >= size {
		next -= size
	}
	p.next = next
}
