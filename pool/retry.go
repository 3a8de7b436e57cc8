package pool

import (
	"container/heap"
	"time"
)

// retryHeap holds the passively downed backends, soonest end of backoff first, so that Acquire
// finds the ones due for a trial without scanning the pool. Guarded by Pool.mu.
type retryHeap []*Backend

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].health.retryAt.Before(h[j].health.retryAt) }
func (h retryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].health.retryIndex = i
	h[j].health.retryIndex = j
}

func (h *retryHeap) Push(x any) {
	b := x.(*Backend)
	b.health.retryIndex = len(*h)
	*h = append(*h, b)
}

func (h *retryHeap) Pop() any {
	old := *h
	b := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	b.health.retryIndex = -1
	return b
}

// set adds b, or moves it after its retryAt changed.
func (h *retryHeap) set(b *Backend) {
	if i := b.health.retryIndex; i >= 0 {
		heap.Fix(h, i)
		return
	}
	heap.Push(h, b)
}

// drop takes b out if it is waiting.
func (h *retryHeap) drop(b *Backend) {
	if i := b.health.retryIndex; i >= 0 {
		heap.Remove(h, i)
	}
}

// endBackoffs makes the backends whose backoff has ended pickable for a trial connection.
// It costs O(log n) per backend that is due, nothing when none is.
func (p *Pool) endBackoffs(now time.Time) {
	for len(p.retry) > 0 && !p.retry[0].health.retryAt.After(now) {
		b := heap.Pop(&p.retry).(*Backend)
		p.place(b, now)
	}
}
