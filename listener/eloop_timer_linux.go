//go:build linux

package listener

import (
	"container/heap"
	"time"
)

// clockEpoch is where the loops' compact clock readings start (clock): a duration since it
// takes 8 bytes where a time.Time takes 24, in fields every connection keeps (its deadline,
// its last activity) and every promoted connection keeps.
var clockEpoch = time.Now()

// clock is t as a compact reading. Both t and clockEpoch carry the monotonic clock, so
// wall-clock steps do not move it.
func clock(t time.Time) time.Duration { return t.Sub(clockEpoch) }

// clockTime is the time of compact reading d.
func clockTime(d time.Duration) time.Time { return clockEpoch.Add(d) }

// timerHeap orders a loop's connections by their one deadline (connect, queue, PROXY header
// or idle, by state), soonest first; its top sets the epoll_wait timeout. Each connection
// knows its index, so setting or clearing a deadline is O(log n).
type timerHeap []*loopConn

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].deadline < h[j].deadline }
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
	c.deadline = clock(at)
	if c.timerIndex >= 0 {
		heap.Fix(h, c.timerIndex)
		return
	}
	heap.Push(h, c)
}

// setSooner gives c the deadline at unless it has a sooner one.
func (h *timerHeap) setSooner(c *loopConn, at time.Time) {
	if c.timerIndex < 0 || clock(at) < c.deadline {
		h.set(c, at)
	}
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
	return clockTime(h[0].deadline)
}

// runTimers fires every deadline that has passed, and ends an accept backoff that is over.
func (l *loop) runTimers() {
	for len(l.timers) > 0 && l.timers[0].deadline <= clock(l.now) {
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
