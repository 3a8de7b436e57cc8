package poll

import (
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Queue is a loop's inbox: other goroutines post tasks (Post, Call) and write an eventfd,
// which the loop watches in its Set; the loop runs them between its waits (Run). A task gets
// the loop's own value, C, so a task that needs nothing else costs no allocation to post.
type Queue[C any] struct {
	wake    int // eventfd
	woken   atomic.Bool
	onPanic func(v any, stack []byte) // hears a task that panicked; the loop goes on

	mu     sync.Mutex // guards tasks and closed; never held across a system call but the wake-up write
	tasks  []func(C)
	closed bool // the loop has ended: Post refuses

	ran []func(C) // scratch: the tasks being run; the loop's alone
}

// NewQueue creates a queue and its eventfd; onPanic hears a task that panicked.
func NewQueue[C any](onPanic func(v any, stack []byte)) (*Queue[C], error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("eventfd", err)
	}
	return &Queue[C]{wake: fd, onPanic: onPanic}, nil
}

// Fd is the eventfd to watch for reading: it is readable when tasks wait.
func (q *Queue[C]) Fd() int { return q.wake }

// Drain reads the eventfd once it reported readable.
func (q *Queue[C]) Drain() {
	var b [8]byte
	unix.Read(q.wake, b[:])
}

// Post queues a task for the loop and wakes it. It returns false when the loop has ended.
func (q *Queue[C]) Post(t func(C)) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.tasks = append(q.tasks, t)
	if !q.woken.Swap(true) {
		// Under mu: the loop closes the eventfd only after it has set closed, so the write
		// can never reach a descriptor number reused since. It cannot block: the counter is
		// far from overflowing.
		one := [8]byte{1}
		unix.Write(q.wake, one[:])
	}
	q.mu.Unlock()
	return true
}

// Call runs t on the loop and waits for it to finish; it returns false, without running t,
// when the loop has ended. Never called from the loop itself.
func (q *Queue[C]) Call(t func(C)) bool {
	done := make(chan struct{})
	if !q.Post(func(c C) { defer close(done); t(c) }) {
		return false
	}
	<-done
	return true
}

// Run runs the tasks posted so far, giving each c. With last set, the queue closes first:
// tasks posted after this Run are refused.
func (q *Queue[C]) Run(c C, last bool) {
	q.woken.Store(false)
	q.mu.Lock()
	q.ran, q.tasks = q.tasks, q.ran[:0]
	if last {
		q.closed = true
	}
	q.mu.Unlock()
	for i, t := range q.ran {
		q.runOne(t, c)
		q.ran[i] = nil
	}
}

func (q *Queue[C]) runOne(t func(C), c C) {
	defer func() {
		if v := recover(); v != nil {
			q.onPanic(v, debug.Stack())
		}
	}()
	t(c)
}

// Close closes the eventfd; call it after the last Run.
func (q *Queue[C]) Close() { unix.Close(q.wake) }
