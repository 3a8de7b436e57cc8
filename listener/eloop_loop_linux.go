//go:build linux

package listener

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// loop is one event loop: an epoll instance driven by one goroutine locked to its OS thread.
// Every field below mu belongs to that goroutine alone.
type loop struct {
	el    *EventLoops
	id    int
	epfd  int
	wake  int // eventfd: other goroutines write it after posting a task
	woken atomic.Bool

	mu     sync.Mutex // guards tasks and closed; the loop never holds it across a system call
	tasks  []task
	closed bool // the loop has ended: post refuses

	events []unix.EpollEvent
	slots  []slot // by descriptor number: what an event on that descriptor is for
	gen    uint32 // last generation handed out; tags each registration
	buf    []byte // the 16 KiB buffer every small message passes through
	relay  relay  // moves the bytes of established connections (eloop_relay_linux.go)
	pipes  pipePool
	timers timerHeap
	conns  connList // every connection of this loop
	now    time.Time

	accepts       []*loopAccept // every listener of every Server on the loops
	acceptBackoff time.Duration // after an accept error (EMFILE): 5 ms doubling to 1 s
	acceptRetryAt time.Time     // zero unless backing off
	notesWaiting  bool          // closed events wait for the notifier's kick (notifier.kick)
	quit          bool
	ran           []task // scratch: the tasks being run
}

// task is work posted to a loop by another goroutine.
type task func(l *loop)

// slot says what a registered descriptor is; gen must match the event's tag, or the event is
// stale: it was queued for a descriptor since closed, whose number has been reused.
type slot struct {
	gen  uint32
	kind slotKind
	c    *loopConn
	acc  *loopAccept
}

type slotKind uint8

const (
	slotFree slotKind = iota
	slotClient
	slotBackend
	slotListener
	slotWake
)

// eventsPerWait bounds how many events one epoll_wait returns.
const eventsPerWait = 256

func newLoop(el *EventLoops, id int) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("listener: epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("listener: eventfd: %w", err)
	}
	l := &loop{el: el, id: id, epfd: epfd, wake: wake, events: make([]unix.EpollEvent, eventsPerWait), buf: make([]byte, smallRead), relay: newRelay(el.mover)}
	if err := l.register(wake, unix.EPOLLIN, slot{kind: slotWake}); err != nil {
		l.closeFDs()
		return nil, err
	}
	return l, nil
}

// register adds fd to the epoll set, tagged with a fresh generation.
func (l *loop) register(fd int, events uint32, s slot) error {
	l.gen++
	s.gen = l.gen
	for fd >= len(l.slots) {
		l.slots = append(l.slots, make([]slot, max(len(l.slots), 64))...)
	}
	ev := unix.EpollEvent{Events: events, Fd: int32(fd), Pad: int32(s.gen)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	l.slots[fd] = s
	return nil
}

// closeFD forgets a connection's descriptor and closes it; the kernel drops its registration.
func (l *loop) closeFD(fd int) {
	if fd < 0 {
		return
	}
	if fd < len(l.slots) {
		l.slots[fd] = slot{}
	}
	unix.Close(fd)
}

// run is the loop's goroutine: it waits for events, handles them, runs due timers and posted
// tasks, until told to quit. Then it resets what is left and closes its descriptors.
func (l *loop) run() {
	runtime.LockOSThread()
	defer l.el.running.Done()
	defer l.closeFDs()
	l.now = time.Now()
	for !l.quit {
		n, err := unix.EpollWait(l.epfd, l.events, l.waitMillis())
		l.now = time.Now()
		if err != nil && err != unix.EINTR {
			l.el.log(slog.Default(), errorLevel, "epoll_wait failed", "loop", l.id, "err", err)
		}
		for i := 0; i < n; i++ {
			l.dispatch(l.events[i])
		}
		l.runTimers()
		l.runTasks()
		l.notesWaiting = l.el.notes.kick(l.now)
	}
	l.conns.each(func(c *loopConn) { l.finish(c, errForced, true) })
	l.runTasks()
}

// dispatch hands one event to what its descriptor is for, unless the event is stale.
func (l *loop) dispatch(ev unix.EpollEvent) {
	fd := int(ev.Fd)
	if fd < 0 || fd >= len(l.slots) {
		return
	}
	s := l.slots[fd]
	if s.kind == slotFree || s.gen != uint32(ev.Pad) {
		return
	}
	switch s.kind {
	case slotWake:
		var b [8]byte
		unix.Read(l.wake, b[:])
	case slotListener:
		l.acceptFrom(s.acc)
	case slotClient, slotBackend:
		l.connEvent(s.c, s.kind == slotClient, ev.Events)
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
func (l *loop) post(t task) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.tasks = append(l.tasks, t)
	if !l.woken.Swap(true) {
		// Under mu: the loop closes the eventfd only after it has set closed, so the write
		// can never reach a descriptor number reused since. It cannot block: the counter is
		// far from overflowing.
		one := [8]byte{1}
		unix.Write(l.wake, one[:])
	}
	l.mu.Unlock()
	return true
}

// call runs t on the loop and waits for it to finish; it returns false, without running t,
// when the loop has ended. Never called from a loop.
func (l *loop) call(t task) bool {
	done := make(chan struct{})
	if !l.post(func(l *loop) { defer close(done); t(l) }) {
		return false
	}
	<-done
	return true
}

func (l *loop) runTasks() {
	l.woken.Store(false)
	l.mu.Lock()
	l.ran, l.tasks = l.tasks, l.ran[:0]
	if l.quit {
		l.closed = true
	}
	l.mu.Unlock()
	for i, t := range l.ran {
		l.runTask(t)
		l.ran[i] = nil
	}
}

// runTask runs one posted task; a panic in it is logged and the loop goes on.
func (l *loop) runTask(t task) {
	defer func() {
		if v := recover(); v != nil {
			l.el.log(slog.Default(), errorLevel, "panic in event loop task", "loop", l.id, "panic", v, "stack", string(debug.Stack()))
		}
	}()
	t(l)
}

// closeFDs closes what the loop itself holds; its connections are gone by then.
func (l *loop) closeFDs() {
	l.pipes.closeAll()
	unix.Close(l.wake)
	unix.Close(l.epfd)
}
