package poll

import (
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// WaitHeld is Wait made without telling the Go scheduler: the calling goroutine keeps its P
// while it sleeps in epoll_pwait. Made the usual way, the wait leaves the P in the system-call
// state; when it lasts more than about 20 µs the runtime's monitor takes the P away, wakes
// another thread for it, and the loop takes a P back when it returns (futex, nanosleep and
// context switches per message on a small-message load).
//
// A goroutine in a raw system call cannot be preempted, so the caller must keep three rules:
// msec is bounded and small (never negative: no wait without end); some other P is free for
// the rest of the process while this one is held; and the goroutine reaches the scheduler
// when a signal interrupts the wait. The third is kept here: the runtime asks a goroutine to
// give its P up (a preemption after 10 ms, a stop-the-world for the collector, a stack scan)
// by sending its thread a signal, which ends epoll_pwait with EINTR whatever SA_RESTART says;
// WaitHeld then yields with runtime.Gosched before returning, so the request is served at
// once rather than at the caller's next stack check. Other signals (SIGTERM, SIGPROF) are
// delivered by the runtime's handler before the call returns. interrupted reports EINTR;
// n is 0 then.
func (s *Set[T]) WaitHeld(msec int) (n int, interrupted bool, err error) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(s.epfd),
		uintptr(unsafe.Pointer(unsafe.SliceData(s.events))), uintptr(len(s.events)), uintptr(max(msec, 0)), 0, 0)
	switch e {
	case 0:
		return int(r), false, nil
	case unix.EINTR:
		runtime.Gosched()
		return 0, true, nil
	default:
		return 0, false, os.NewSyscallError("epoll_pwait", e)
	}
}
