package poll

import (
	"os"

	"golang.org/x/sys/unix"
)

// Set is an epoll instance whose registrations carry a value of T (what the descriptor is
// for) and a generation tag. A descriptor closed and its number reused at once may still have
// events queued for its old registration: their tag no longer matches, and Event drops them,
// so a reused number never receives the events of the socket that held it before.
type Set[T any] struct {
	epfd   int
	events []unix.EpollEvent
	slots  []slot[T] // by descriptor number
	gen    uint32    // the last generation handed out
}

type slot[T any] struct {
	gen  uint32
	used bool
	v    T
}

// NewSet creates an epoll instance that reports at most maxEvents events per Wait.
func NewSet[T any](maxEvents int) (*Set[T], error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	ownSets.Store(epfd, struct{}{})
	return &Set[T]{epfd: epfd, events: make([]unix.EpollEvent, maxEvents)}, nil
}

// Add registers fd for events, tagged with a fresh generation, carrying v.
func (s *Set[T]) Add(fd int, events uint32, v T) error {
	s.gen++
	for fd >= len(s.slots) {
		s.slots = append(s.slots, make([]slot[T], max(len(s.slots), 64))...)
	}
	ev := unix.EpollEvent{Events: events, Fd: int32(fd), Pad: int32(s.gen)}
	if err := epollCtl(s.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	s.slots[fd] = slot[T]{gen: s.gen, used: true, v: v}
	return nil
}

// Modify changes the events fd is registered for, keeping its value and generation. epoll
// looks at fd's readiness again at once, so an edge that came while fd was not registered
// for it is not lost.
func (s *Set[T]) Modify(fd int, events uint32) error {
	gen := s.Gen(fd)
	if gen == 0 {
		return os.NewSyscallError("epoll_ctl", unix.ENOENT)
	}
	ev := unix.EpollEvent{Events: events, Fd: int32(fd), Pad: int32(gen)}
	if err := epollCtl(s.epfd, unix.EPOLL_CTL_MOD, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// Forget drops fd's registration before the caller closes it; closing takes it out of the
// epoll set.
func (s *Set[T]) Forget(fd int) {
	if fd >= 0 && fd < len(s.slots) {
		s.slots[fd] = slot[T]{}
	}
}

// Remove takes fd, which stays open, out of the epoll set.
func (s *Set[T]) Remove(fd int) {
	epollCtl(s.epfd, unix.EPOLL_CTL_DEL, fd, nil) // fails only if it was not there
	s.Forget(fd)
}

// Gen is the generation of fd's registration; 0 when it has none.
func (s *Set[T]) Gen(fd int) uint32 {
	if fd < 0 || fd >= len(s.slots) || !s.slots[fd].used {
		return 0
	}
	return s.slots[fd].gen
}

// Wait waits up to msec milliseconds (forever when negative) for events and returns how many
// came; read them with Event. EINTR is no error: it returns 0. Another error is the errno.
func (s *Set[T]) Wait(msec int) (int, error) {
	n, err := unix.EpollWait(s.epfd, s.events, msec)
	if err == unix.EINTR {
		return 0, nil
	}
	return max(n, 0), err
}

// Event is the i-th event of the last Wait: the value its registration carries and the
// readiness bits. ok is false for a stale event, which the caller must ignore.
func (s *Set[T]) Event(i int) (v T, events uint32, ok bool) {
	ev := &s.events[i]
	v, ok = s.Lookup(int(ev.Fd), uint32(ev.Pad))
	return v, ev.Events, ok
}

// Lookup is the value of fd's registration if its generation is gen.
func (s *Set[T]) Lookup(fd int, gen uint32) (v T, ok bool) {
	if fd < 0 || fd >= len(s.slots) {
		return v, false
	}
	sl := &s.slots[fd]
	if !sl.used || sl.gen != gen {
		return v, false
	}
	return sl.v, true
}

// Close closes the epoll instance.
func (s *Set[T]) Close() {
	ownSets.Delete(s.epfd)
	unix.Close(s.epfd)
}
