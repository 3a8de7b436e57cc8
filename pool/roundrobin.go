package pool

import (
	"cmp"
	"net/netip"
	"slices"
)

// roundRobin is smooth weighted round robin, nginx's algorithm: on each pick every backend's
// current weight grows by its weight, the one with the largest current is chosen (the first
// listed among equals), and its current drops by the total of the weights. Over every run of
// picks as long as the total, each backend is chosen exactly its weight's number of times,
// spread out rather than in bursts: weights 1 and 2 give b, a, b, b, a, b...; 5, 1 and 1 give
// a, a, b, a, c, a, a.
//
// nginx walks every backend per pick: O(n). Here the backends of one weight form a class, and
// the class stands for them all: its members' currents grow alike, and the plain algorithm
// takes them in list order, so the largest current in a class is always that of the member
// whose turn is next (the cursor), one current per class is enough. It drops by the total once
// every member has had its turn (the cursor wraps). A pick walks the classes, not the backends:
// O(k) for k distinct weights (at most MaxWeight, a handful in practice), O(1) in the number
// of backends. The sequence is the plain algorithm's over the backends listed heaviest first,
// each weight's in ring order.
//
// Only pickable backends are members: one that goes down, drains, fills up to its connection
// limit or expires leaves its class when it leaves the live set, so the others share the picks
// exactly by their weights meanwhile, and one that comes back joins at the end of its ring.
// Configured weights are used: slow start does not ramp round robin.
type roundRobin struct{}

func (roundRobin) Name() string { return "roundrobin" }

// ordered is false: round robin never needs the lightest backend but on its rare fall-back.
func (roundRobin) ordered() bool { return false }

func (roundRobin) pick(c *candidates, _ netip.Addr) *Backend {
	r := c.live.rr
	if r == nil || r.total == 0 {
		return c.lightest()
	}
	cl := r.next()
	for range len(cl.members) { // an excluded or expired member passes its turn on in the class
		if b := r.take(cl); c.usable(b) {
			return b
		}
	}
	return c.lightest()
}

// rrSchedule is the round-robin state of a pool's live backends. It is guarded by Pool.mu and
// kept by liveHeap as backends enter and leave the live set.
type rrSchedule struct {
	classes []*rrClass // every weight seen, heaviest first; at most MaxWeight
	total   int64      // the sum of the members' weights
}

// rrClass is the live backends of one weight, and the current weight they share. A class whose
// members all left keeps its current, skipped until one comes back, as the plain algorithm
// leaves a skipped backend's current alone.
type rrClass struct {
	weight  int64
	members []*Backend // ring order; Backend.rrSlot is the position
	cursor  int        // the member whose turn is next: those before it had theirs this round
	round   uint32     // counts the rounds (every member's turn) the class has been through
	current int64      // smooth weighted round robin's current weight of the class
}

// next advances the schedule one pick and returns the class whose turn it is: every class with
// members has its current grow by its weight, and the largest, heaviest among equals, is
// chosen. Call it only when total > 0.
func (r *rrSchedule) next() *rrClass {
	var best *rrClass
	for _, cl := range r.classes {
		if len(cl.members) == 0 {
			continue
		}
		cl.current += cl.weight
		if best == nil || cl.current > best.current {
			best = cl
		}
	}
	return best
}

// take returns the member of cl whose turn it is and moves the cursor on; once every member
// has had its turn the class's current drops by the total, as the plain algorithm drops each
// member's when it is chosen.
func (r *rrSchedule) take(cl *rrClass) *Backend {
	b := cl.members[cl.cursor]
	b.rrRound = cl.round + 1
	if cl.cursor++; cl.cursor == len(cl.members) {
		cl.endRound(r.total)
	}
	return b
}

func (cl *rrClass) endRound(total int64) {
	cl.cursor = 0
	cl.round++
	cl.current -= total
}

// add makes b a member of its weight's class. One that already had its turn in the class's
// round (it filled up, say, and has room again) joins among those that had theirs, so that it
// gets no second turn; any other joins at the end of the ring.
func (r *rrSchedule) add(b *Backend) {
	i, found := slices.BinarySearchFunc(r.classes, int64(b.weight), func(cl *rrClass, w int64) int {
		return cmp.Compare(w, cl.weight) // heaviest first
	})
	if !found {
		r.classes = slices.Insert(r.classes, i, &rrClass{weight: int64(b.weight)})
	}
	cl := r.classes[i]
	if int(b.rrWeight) != b.weight { // its last turn was in another class
		b.rrRound = 0
	}
	b.rrWeight = int16(b.weight)
	cl.members = append(cl.members, b)
	b.rrSlot = int32(len(cl.members) - 1)
	r.total += cl.weight
	switch {
	case b.rrRound != cl.round+1: // a newcomer to this round
	case cl.cursor == len(cl.members)-1: // every member has had its turn: the round is over
		cl.endRound(r.total)
	default:
		cl.move(cl.cursor, len(cl.members)-1)
		cl.members[cl.cursor], b.rrSlot = b, int32(cl.cursor)
		cl.cursor++
	}
}

// remove takes b out of its class, in O(1). A move keeps every member on its side of the
// cursor, so that nobody loses or gains a turn.
func (r *rrSchedule) remove(b *Backend) {
	i := slices.IndexFunc(r.classes, func(cl *rrClass) bool { return cl.weight == int64(b.rrWeight) })
	if i < 0 || b.rrSlot < 0 {
		return
	}
	cl, at := r.classes[i], int(b.rrSlot)
	if at < cl.cursor { // it had its turn: a member that also had one takes its place
		cl.cursor--
		cl.move(cl.cursor, at)
		at = cl.cursor
	}
	last := len(cl.members) - 1
	cl.move(last, at)
	cl.members[last] = nil
	cl.members = cl.members[:last]
	b.rrSlot = -1
	switch {
	case last == 0:
		cl.cursor = 0 // empty: its current waits for a member to come back
	case cl.cursor >= last: // every member left has had its turn: the round is over
		cl.endRound(r.total)
	}
	r.total -= cl.weight
}

// move puts the member at from into slot to (a no-op when they are the same).
func (cl *rrClass) move(from, to int) {
	cl.members[to] = cl.members[from]
	cl.members[to].rrSlot = int32(to)
}

// reweigh moves b to its new weight's class after a weight change, as a newcomer.
func (r *rrSchedule) reweigh(b *Backend) {
	if b.rrSlot >= 0 && int(b.rrWeight) != b.weight {
		r.remove(b)
		r.add(b)
	}
}
