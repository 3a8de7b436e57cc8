package pool

// liveHeap holds the pickable backends as a binary min-heap ordered by load (active/weight),
// ties going to the backend picked longest ago. Each backend knows its own index, so a count
// change re-sorts it in O(log n). It is guarded by Pool.mu.
type liveHeap []*Backend

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

func (h liveHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *liveHeap) push(b *Backend) {
	b.index = len(*h)
	*h = append(*h, b)
	h.up(b.index)
}

// remove takes b out of the heap; b.index becomes -1.
func (h *liveHeap) remove(b *Backend) {
	i, last := b.index, len(*h)-1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = nil
	*h = (*h)[:last]
	b.index = -1
	if i != last {
		h.fix(i)
	}
}

// fix restores the heap order after the backend at i changed its load.
func (h liveHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h liveHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !lighter(h[i], h[parent]) {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

func (h liveHeap) down(i0 int) bool {
	i := i0
	for {
		c := 2*i + 1
		if c >= len(h) {
			break
		}
		if r := c + 1; r < len(h) && lighter(h[r], h[c]) {
			c = r
		}
		if !lighter(h[c], h[i]) {
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
func (h liveHeap) lightestWhere(ok func(*Backend) bool) *Backend {
	if len(h) == 0 {
		return nil
	}
	if ok(h[0]) { // the common case: the lightest is usable
		return h[0]
	}
	var buf [16]int // stays on the stack for the usual handful of refusals
	frontier := append(buf[:0], 0)
	for len(frontier) > 0 {
		best := 0
		for i := 1; i < len(frontier); i++ {
			if lighter(h[frontier[i]], h[frontier[best]]) {
				best = i
			}
		}
		i := frontier[best]
		frontier[best] = frontier[len(frontier)-1]
		frontier = frontier[:len(frontier)-1]
		if ok(h[i]) {
			return h[i]
		}
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < len(h) {
				frontier = append(frontier, c)
			}
		}
	}
	return nil
}
