package listener

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// idleWatch closes a proxied connection on which no byte has moved either way for timeout,
// half-closed connections included.
//
// It is a timer, not socket deadlines, because a deadline cannot be refreshed safely from the
// splice loop: a write deadline that fires while splice(2) is pumping its pipe into the slow
// side makes Go discard the bytes already in the pipe (internal/poll putPipe), and a read
// deadline alone cannot see a direction that is stuck writing, or one that moves a few bytes at
// a time inside a long chunk. The timer instead asks the kernel (TCP_INFO bytes received and
// acknowledged on both sockets) whether anything moved since its last look, so slow progress
// anywhere counts and the copy loops stay untouched. Where TCP_INFO is missing, the bytes the
// copy loops report per chunk are the measure.
type idleWatch struct {
	client, backend *net.TCPConn
	timeout         time.Duration
	moved           atomic.Int64 // bytes reported by the copy loops

	mu         sync.Mutex
	timer      *time.Timer
	last       progress
	quietSince time.Time
	stopped    bool
	fired      bool
}

// progress is everything that shows bytes moving; any change is activity.
type progress struct {
	moved int64
	kern  [2]tcpCounters // client, backend
}

// watchIdle starts watching; it returns nil (a valid, inert watch) when timeout is zero.
func watchIdle(client, backend *net.TCPConn, timeout time.Duration) *idleWatch {
	if timeout <= 0 {
		return nil
	}
	// No baseline read of TCP_INFO here: two getsockopt calls on every new connection would
	// cost more than they are worth. The first check compares against zero counters, so a
	// connection that moved bytes before it counts its quiet time from that check: it closes
	// at most one tick later than the timeout.
	w := &idleWatch{client: client, backend: backend, timeout: timeout, quietSince: time.Now()}
	w.mu.Lock()
	w.timer = time.AfterFunc(w.tick(), w.check)
	w.mu.Unlock()
	return w
}

// tick is how often the watch looks: a connection closes between timeout and timeout+2×tick
// after its last byte.
func (w *idleWatch) tick() time.Duration { return max(w.timeout/8, time.Millisecond) }

func (w *idleWatch) progress() progress {
	return progress{moved: w.moved.Load(), kern: [2]tcpCounters{readTCPCounters(w.client), readTCPCounters(w.backend)}}
}

// check runs on the timer's goroutine.
func (w *idleWatch) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	now := time.Now()
	if p := w.progress(); p != w.last {
		w.last, w.quietSince = p, now
	}
	left := w.quietSince.Add(w.timeout).Sub(now)
	if left <= 0 {
		w.fired = true
		abort(w.client, w.backend)
		return
	}
	w.timer.Reset(min(w.tick(), left))
}

// stop ends the watch and reports whether it closed the connection. Safe on a nil watch.
func (w *idleWatch) stop() (fired bool) {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.timer.Stop()
	return w.fired
}

// meter wraps m so that the watch also hears the copy loops' chunks.
func (w *idleWatch) meter(m Meter) Meter {
	if w == nil {
		return m
	}
	return idleMeter{w: w, next: m}
}

type idleMeter struct {
	w    *idleWatch
	next Meter
}

func (im idleMeter) Moved(up bool, n int64) {
	im.w.moved.Add(n)
	if im.next != nil {
		im.next.Moved(up, n)
	}
}

// Flush implements Meter; the watch batches nothing.
func (im idleMeter) Flush() {
	if im.next != nil {
		im.next.Flush()
	}
}
