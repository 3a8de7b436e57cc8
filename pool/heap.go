package pool

// liveHeap holds the pickable backends as a binary min-heap ordered by load (active/weight),
// ties going to the backend picked longest ago. Each backend knows its own index, so a count
// change re-sorts it in O(log n). It is guarded by Pool.mu.
//
// A policy that never needs the lightest backend on its common path (p2c, maglev) switches the
// order off: items is then a plain dense slice, a count change costs nothing, and only the rare
// fall-back to the lightest scans it.
type liveHeap struct {
	items     []*Backend
	unordered bool
	rr        *rrSchedule // the round-robin schedule of items; nil for other policies
}

// setRoundRobin starts keeping the round-robin schedule of the items, once, when the pool's
// policy is RoundRobin.
func (h *liveHeap) setRoundRobin(on bool) {
	if !on || h.rr != nil {
		return
	}
	h.rr = &rrSchedule{}
	for _, b := range h.items {
		h.rr.add(b)
	}
}

// setOrdered switches heap order on or off. Switching it on sorts the items into a heap:
// O(n), once, and only if a pool changes its policy after first use.
func (h *liveHeap) setOrdered(on bool) {
	if h.unordered != on {
		return
	}
	h.unordered = !on
	if on {
		for i := len(h.items)/2 - 1; i >= 0; i-- {
			h.down(i)
		}
	}
}

// lighter reports whether a should take the next connection before b.
func lighter(a, b *Backend) bool {
	// active/weight compared without division, over effective weights in thousandths: exact
	// for any counts and weights (a ramping weight is rounded to a thousandth).
	la, lb := a.active*b.eff, b.active*a.eff
	if la != lb {
		return la < lb
	}
	return a.lastPick < b.lastPick
}

func (h *liveHeap) swap(i, j int) {
	s := h.items
	s[i], s[j] = s[j], s[i]
	s[i].index = i
	s[j].index = j
}

func (h *liveHeap) push(b *Backend) {
	b.index = len(h.items)
	h.items = append(h.items, b)
	h.up(b.index)
	if h.rr != nil {
		h.rr.add(b)
	}
}

// remove takes b out of the heap; b.index becomes -1.
func (h *liveHeap) remove(b *Backend) {
	i, last := b.index, len(h.items)-1
	if i != last {
		h.swap(i, last)
	}
	h.items[last] = nil
	h.items = h.items[:last]
	b.index = -1
	if h.rr != nil {
		h.rr.remove(b)
	}
	if i != last {
		h.fix(i)
	}
}

// fix restores the heap order after the backend at i changed its load or weight.
func (h *liveHeap) fix(i int) {
	if h.rr != nil {
		h.rr.reweigh(h.items[i])
	}
	if !h.down(i) {
		h.up(i)
	}
}

func (h *liveHeap) up(i int) {
	for !h.unordered && i > 0 {
		parent := (i - 1) / 2
		if !lighter(h.items[i], h.items[parent]) {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

func (h *liveHeap) down(i0 int) bool {
	s, i := h.items, i0
	for !h.unordered {
		c := 2*i + 1
		if c >= len(s) {
			break
		}
		if r := c + 1; r < len(s) && lighter(s[r], s[c]) {
			c = r
		}
		if !lighter(s[c], s[i]) {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > i0
}

// lightestWhere returns the lightest backend for which ok is true, or nil. It walks the heap
// best-first, so it visits only the backends lighter than the answer and their children: with
// a handful of refusals (retries after failed dials) that is a handful of nodes.
func (h *liveHeap) lightestWhere(ok func(*Backend) bool) *Backend {
	if h.unordered {
		return h.scanLightest(ok)
	}
	s := h.items
	if len(s) == 0 {
		return nil
	}
	if ok(s[0]) { // the common case: the lightest is usable
		return s[0]
	}
	var buf [16]int // stays on the stack for the usual handful of refusals
	frontier := append(buf[:0], 0)
	for len(frontier) > 0 {
		best := 0
		for i := 1; i < len(frontier); i++ {
			if lighter(s[frontier[i]], s[frontier[best]]) {
				best = i
			}
		}
		i := frontier[best]
		frontier[best] = frontier[len(frontier)-1]
		frontier = frontier[:len(frontier)-1]
		if ok(s[i]) {
			return s[i]
		}
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < len(s) {
				frontier = append(frontier, c)
			}
		}
	}
	return nil
}

// scanLightest is lightestWhere without heap order: O(n). ok is asked only of backends lighter
// than the best usable one found so far, as in the ordered walk.
func (h *liveHeap) scanLightest(ok func(*Backend) bool) *Backend {
	var best *Backend
	for _, b := range h.items {
		if (best == nil || lighter(b, best)) && ok(b) {
			best = b
		}
	}
	return best
}
