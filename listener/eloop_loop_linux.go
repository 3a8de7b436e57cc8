//go:build linux

package listener

import (
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fulcrumlb/fulcrum/listener/internal/poll"
)

// loop is one event loop: an epoll set driven by one goroutine locked to its OS thread. The
// mechanism (the set and its generation tags, the task queue and its wake-up, the pipes) is
// package poll's; the loop owns what is fulcrum's: connections, timers, accepting. Every
// field belongs to the loop's goroutine, except that other goroutines post to inbox.
type loop struct {
	el    *EventLoops
	id    int
	set   *poll.Set[slot]    // what each registered descriptor is for
	inbox *poll.Queue[*loop] // tasks posted by other goroutines

	buf    []byte // the 16 KiB buffer every small message passes through
	relay  relay  // moves the bytes of established connections (eloop_relay_linux.go)
	pipes  poll.Pipes
	entry  mapPair // what the sockmap mover puts in or takes out of the kernel maps, read in place
	timers timerHeap
	conns  connList  // every connection of this loop
	cache  connCache // ended connections, for reuse
	now    time.Time

	accepts       []*loopAccept // every listener of every Server on the loops
	acceptBackoff time.Duration // after an accept error (EMFILE): 5 ms doubling to 1 s
	acceptRetryAt time.Time     // zero unless backing off
	notesWaiting  bool          // closed events wait for the notifier's kick (notifier.kick)
	quit          bool

	held           bool   // the next wait holds the P (eloop_wait_linux.go)
	heldWaits      uint64 // held waits made, and how many a signal interrupted: for tests
	heldInterrupts uint64
}

// task is work posted to a loop by another goroutine.
type task = func(l *loop)

// slot says what a registered descriptor is for.
type slot struct {
	kind slotKind
	c    *loopConn
	acc  *loopAccept
}

type slotKind uint8

const (
	slotClient slotKind = iota
	slotBackend
	slotListener
	slotWake
)

// eventsPerWait bounds how many events one epoll_wait returns.
const eventsPerWait = 256

func newLoop(el *EventLoops, id int) (*loop, error) {
	set, err := poll.NewSet[slot](eventsPerWait)
	if err != nil {
		return nil, fmt.Errorf("listener: %w", err)
	}
	inbox, err := poll.NewQueue[*loop](func(v any, stack []byte) {
		el.log(slog.Default(), errorLevel, "panic in event loop task", "loop", id, "panic", v, "stack", string(stack))
	})
	if err != nil {
		set.Close()
		return nil, fmt.Errorf("listener: %w", err)
	}
	l := &loop{el: el, id: id, set: set, inbox: inbox, buf: make([]byte, smallRead), relay: newRelay(el)}
	if err := l.register(inbox.Fd(), unix.EPOLLIN, slot{kind: slotWake}); err != nil {
		l.closeFDs()
		return nil, err
	}
	return l, nil
}

// register adds fd to the epoll set, tagged with a fresh generation.
func (l *loop) register(fd int, events uint32, s slot) error { return l.set.Add(fd, events, s) }

// closeFD forgets a connection's descriptor and closes it; the kernel drops its registration.
func (l *loop) closeFD(fd int) {
	if fd < 0 {
		return
	}
	l.set.Forget(fd)
	poll.Close(fd)
}

// run is the loop's goroutine: it waits for events, handles them, runs due timers and posted
// tasks, until told to quit. Then it resets what is left and closes its descriptors.
func (l *loop) run() {
	runtime.LockOSThread()
	defer l.el.running.Done()
	loopsRunning.Add(1)
	defer loopsRunning.Add(-1)
	defer l.closeFDs()
	l.now = time.Now()
	for !l.quit {
		n, err := l.wait()
		l.now = time.Now()
		if err != nil {
			l.el.log(slog.Default(), errorLevel, "epoll_wait failed", "loop", l.id, "err", err)
		}
		for i := 0; i < n; i++ {
			if s, ev, ok := l.set.Event(i); ok { // a stale event's descriptor was reused
				l.dispatch(s, ev)
			}
		}
		l.runTimers()
		l.runTasks()
		l.notesWaiting = l.el.notes.kick(l.now)
	}
	l.conns.each(func(c *loopConn) { l.finish(c, errForced, true) })
	l.runTasks()
}

// dispatch hands one event to what its descriptor is for.
func (l *loop) dispatch(s slot, ev uint32) {
	switch s.kind {
	case slotWake:
		l.inbox.Drain()
	case slotListener:
		l.acceptFrom(s.acc)
	case slotClient, slotBackend:
		l.connEvent(s.c, s.kind == slotClient, ev)
	}
}

// waitMillis is epoll_wait's timeout: until the next timer, or forever when none is set; at
// most kickEvery while closed events wait for the notifier to be woken.
func (l *loop) waitMillis() int {
	ms := l.timerMillis()
	if l.notesWaiting && (ms < 0 || ms > int(kickEvery/time.Millisecond)) {
		return int(kickEvery / time.Millisecond)
	}
	return ms
}

func (l *loop) timerMillis() int {
	next := l.timers.next()
	if !l.acceptRetryAt.IsZero() && (next.IsZero() || l.acceptRetryAt.Before(next)) {
		next = l.acceptRetryAt
	}
	if next.IsZero() {
		return -1
	}
	d := next.Sub(time.Now())
	if d <= 0 {
		return 0
	}
	return int((d + time.Millisecond - 1) / time.Millisecond)
}

// post queues a task for the loop and wakes it. It returns false when the loop has ended.
func (l *loop) post(t task) bool { return l.inbox.Post(t) }

// call runs t on the loop and waits for it to finish; it returns false, without running t,
// when the loop has ended. Never called from a loop.
func (l *loop) call(t task) bool { return l.inbox.Call(t) }

// runTasks runs what other goroutines posted; once the loop quits, posting is refused.
func (l *loop) runTasks() { l.inbox.Run(l, l.quit) }

// closeFDs closes what the loop itself holds; its connections are gone by then.
func (l *loop) closeFDs() {
	l.pipes.CloseAll()
	l.inbox.Close()
	l.set.Close()
}
