//go:build linux

package listener

import (
	"log/slog"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

const (
	errorLevel = slog.LevelError
	warnLevel  = slog.LevelWarn
)

// maxQueuedLogs is where the loops' log lines start being dropped: a loop never waits for the
// log. Observer events are never dropped (an access log line per connection is a promise).
const maxQueuedLogs = 4096

// Closed events, one per connection, are the bulk of the notices. Waking the notifier's
// goroutine for each costs a thread wake-up (futex) per connection, about a tenth of what a
// short connection costs the balancer; so the loops wake it at most once per kickEvery for
// them (kick), or at once when kickAt of them wait. Each wake-up also costs more than its
// futex: a thread spins up to take the spare P and steal the goroutine, and the loop's own
// P may be retaken while it waits in epoll_wait. Under connection load 1 ms meant futex 0.18
// per connection; 10 ms gives 0.08-0.12 and 8% less CPU per connection (bench/EXPERIMENTS.md).
// An Observer hears a connection's end at most 10 ms late.
const (
	kickEvery = 10 * time.Millisecond
	kickAt    = 256
)

// notifier runs, on its own goroutine, what a loop must not: Observer calls that may block
// (the access log writes a file). Log lines go through an asynclog queue instead (EventLoops.log).
// A loop queues a notice under a lock held for
// an append, never across a system call, and wakes the goroutine through a channel.
//
// Opened and Meter.Moved are not queued: the loop needs the Meter at once, and both are
// documented not to block. The notifier keeps each connection's order: Closed, then Flush.
type notifier struct {
	mu       sync.Mutex // guards q and lastKick
	q        []notice
	unwoken  atomic.Bool   // q holds closed events the goroutine was not woken for
	nClosed  atomic.Uint64 // closed events ever queued (tests read it)
	lastKick time.Time     // when kick last woke the goroutine
	wake     chan struct{} // capacity 1: a pending wake-up
	quit     chan struct{}
	done     chan struct{}
}

type noticeKind uint8

const (
	noticeRejected noticeKind = iota
	noticeDialFailed
	noticeClosed
)

// notice is one queued Observer call.
type notice struct {
	kind    noticeKind
	obs     Observer
	info    *ConnInfo
	traffic Traffic
	meter   Meter
	reuse   reusable // told after the Closed call and the Flush; nil: nothing to tell
	client  netip.AddrPort
	backend *pool.Backend
	err     error
}

// loopSink is the event loops' eventSink (connbook.go): Observer events leave through the
// notifier, log lines through the loops' log queue, so a loop never waits for either.
type loopSink struct{ el *EventLoops }

func (s loopSink) log(logger *slog.Logger, level slog.Level, msg string, args ...any) {
	s.el.log(logger, level, msg, args...)
}

func (s loopSink) rejected(o Observer, client netip.AddrPort, err error) {
	s.el.notes.rejected(o, client, err)
}

func (s loopSink) dialFailed(o Observer, b *pool.Backend, err error) {
	s.el.notes.dialFailed(o, b, err)
}

func (s loopSink) closed(o Observer, info *ConnInfo, t Traffic, m Meter, r reusable) {
	s.el.notes.closed(o, info, t, m, r)
}

func newNotifier() *notifier {
	n := &notifier{wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go n.run()
	return n
}

func (n *notifier) rejected(o Observer, client netip.AddrPort, err error) {
	if o != nil {
		n.push(notice{kind: noticeRejected, obs: o, client: client, err: err})
	}
}

func (n *notifier) dialFailed(o Observer, b *pool.Backend, err error) {
	if o != nil {
		n.push(notice{kind: noticeDialFailed, obs: o, backend: b, err: err})
	}
}

// closed queues a connection's end without waking the goroutine: a loop calls it, and the
// loops' kick wakes it within kickEvery. r (when not nil) hears when the notice is delivered:
// info and m live in the connection's struct, which its loop reuses then.
func (n *notifier) closed(o Observer, info *ConnInfo, t Traffic, m Meter, r reusable) {
	if o == nil {
		if r != nil {
			r.reuse()
		}
		return
	}
	n.nClosed.Add(1)
	n.mu.Lock()
	n.q = append(n.q, notice{kind: noticeClosed, obs: o, info: info, traffic: t, meter: m, reuse: r})
	n.unwoken.Store(true)
	urgent := len(n.q) >= kickAt
	n.mu.Unlock()
	if urgent {
		n.signal()
	}
}

func (n *notifier) push(x notice) {
	n.mu.Lock()
	n.q = append(n.q, x)
	n.mu.Unlock()
	n.signal()
}

func (n *notifier) signal() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// kick wakes the goroutine for closed events queued since its last wake-up, at most once per
// kickEvery. It reports whether some still wait, so that the loop comes back within kickEvery.
func (n *notifier) kick(now time.Time) (waiting bool) {
	if !n.unwoken.Load() { // every loop asks on every turn: no shared lock when nothing waits
		return false
	}
	n.mu.Lock()
	if now.Sub(n.lastKick) < kickEvery {
		n.mu.Unlock()
		return true
	}
	n.unwoken.Store(false)
	n.lastKick = now
	n.mu.Unlock()
	n.signal()
	return false
}

// run is the notifier's goroutine; it ends after stop, once the queue is empty.
func (n *notifier) run() {
	defer close(n.done)
	var batch []notice
	for {
		select {
		case <-n.wake:
		case <-n.quit:
			n.deliver(n.swap(&batch))
			return
		}
		n.deliver(n.swap(&batch))
	}
}

func (n *notifier) swap(batch *[]notice) []notice {
	n.mu.Lock()
	defer n.mu.Unlock()
	*batch, n.q = n.q, (*batch)[:0]
	n.unwoken.Store(false)
	return *batch
}

func (n *notifier) deliver(batch []notice) {
	for i := range batch {
		x := &batch[i]
		n.deliverOne(x)
		if x.reuse != nil { // after a panic too: the observer is done with the connection
			x.reuse.reuse()
		}
		*x = notice{}
	}
}

// deliverOne makes one call; a panicking observer is logged, not fatal.
func (n *notifier) deliverOne(x *notice) {
	defer func() {
		if v := recover(); v != nil {
			slog.Error("panic in connection observer", "panic", v, "stack", string(debug.Stack()))
		}
	}()
	switch x.kind {
	case noticeRejected:
		x.obs.Rejected(x.client, x.err)
	case noticeDialFailed:
		x.obs.DialFailed(x.backend, x.err)
	case noticeClosed:
		x.obs.Closed(x.info, x.traffic)
		if x.meter != nil {
			x.meter.Flush()
		}
	}
}

// stop delivers what is queued and ends the goroutine. Call it once, after the loops ended.
func (n *notifier) stop() {
	close(n.quit)
	<-n.done
}
