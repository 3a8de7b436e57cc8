//go:build linux

package listener

import (
	"container/heap"
	"time"
)

// timerHeap orders a loop's connections by their one deadline (connect, queue, PROXY header
// or idle, by state), soonest first; its top sets the epoll_wait timeout. Each connection
// knows its index, so setting or clearing a deadline is O(log n).
type timerHeap []*loopConn

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].timerIndex = i
	h[j].timerIndex = j
}

func (h *timerHeap) Push(x any) {
	c := x.(*loopConn)
	c.timerIndex = len(*h)
	*h = append(*h, c)
}

func (h *timerHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	c.timerIndex = -1
	return c
}

// set gives c the deadline at, replacing any it had.
func (h *timerHeap) set(c *loopConn, at time.Time) {
	c.deadline = at
	if c.timerIndex >= 0 {
		heap.Fix(h, c.timerIndex)
		return
	}
	heap.Push(h, c)
}

// clear removes c's deadline, if it has one.
func (h *timerHeap) clear(c *loopConn) {
	if c.timerIndex >= 0 {
		heap.Remove(h, c.timerIndex)
	}
}

// next is the soonest deadline; zero when none is set.
func (h timerHeap) next() time.Time {
	if len(h) == 0 {
		return time.Time{}
	}
	return h[0].deadline
}

// runTimers fires every deadline that has passed, and ends an accept backoff that is over.
func (l *loop) runTimers() {
	for len(l.timers) > 0 && !l.timers[0].deadline.After(l.now) {
		c := heap.Pop(&l.timers).(*loopConn)
		l.connTimeout(c)
	}
	if !l.acceptRetryAt.IsZero() && !l.acceptRetryAt.After(l.now) {
		l.acceptRetryAt = time.Time{}
		for _, a := range l.accepts {
			l.updateAccepting(a)
		}
	}
}
