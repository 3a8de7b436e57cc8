package poll

import (
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSetDropsStaleGeneration: a descriptor number closed and reused at once gets a new
// generation; an event tagged with the old one finds nothing, the new one finds its value.
func TestSetDropsStaleGeneration(t *testing.T) {
	s, err := NewSet[string](8)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old := pipeFD(t)
	if err := s.Add(old, unix.EPOLLIN, "old"); err != nil {
		t.Fatal(err)
	}
	gen := s.Gen(old)
	s.Forget(old)
	unix.Close(old)
	fresh := pipeFD(t)
	if fresh != old {
		t.Skipf("descriptor %d not reused (got %d)", old, fresh)
	}
	if err := s.Add(fresh, unix.EPOLLIN, "new"); err != nil {
		t.Fatal(err)
	}
	if v, ok := s.Lookup(fresh, gen); ok {
		t.Fatalf("stale generation found %q", v)
	}
	if v, ok := s.Lookup(fresh, s.Gen(fresh)); !ok || v != "new" {
		t.Fatalf("current generation: %q, %v", v, ok)
	}
}

// pipeFD opens a pipe and returns its read end; the write end is closed at cleanup.
func pipeFD(t *testing.T) int {
	t.Helper()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[1]) })
	return fds[0]
}

// TestQueueRunsPostedTasksAndRefusesAfterLast: posted tasks run with the loop's value, a
// panicking task is reported and the others still run, and after the last Run Post refuses.
func TestQueueRunsPostedTasksAndRefusesAfterLast(t *testing.T) {
	var panics int
	q, err := NewQueue[*[]int](func(any, []byte) { panics++ })
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var got []int
	q.Post(func(c *[]int) { *c = append(*c, 1) })
	q.Post(func(*[]int) { panic("bug") })
	q.Post(func(c *[]int) { *c = append(*c, 2) })
	q.Run(&got, true)
	if len(got) != 2 || panics != 1 {
		t.Fatalf("ran %v, %d panics", got, panics)
	}
	if q.Post(func(*[]int) {}) {
		t.Fatal("Post accepted a task after the last Run")
	}
}

// TestConnectRaw: Socket and Connect reach a loopback listener by an IPv4, an IPv4-mapped
// IPv6 and an IPv6 address, and the listener sees the right port; Read and Write move bytes.
func TestConnectRaw(t *testing.T) {
	for _, tc := range []struct{ name, listen, dial string }{
		{"ipv4", "127.0.0.1:0", "127.0.0.1"},
		{"ipv4-mapped", "127.0.0.1:0", "::ffff:127.0.0.1"},
		{"ipv6", "[::1]:0", "::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", tc.listen)
			if err != nil {
				t.Skipf("listen %s: %v", tc.listen, err)
			}
			defer ln.Close()
			port := uint16(ln.Addr().(*net.TCPAddr).Port)
			ap := netip.AddrPortFrom(netip.MustParseAddr(tc.dial), port)
			fd, err := Socket(Family(ap))
			if err != nil {
				t.Fatal(err)
			}
			defer Close(fd)
			if err := Connect(fd, ap); err != nil && err != unix.EINPROGRESS {
				t.Fatalf("connect %s: %v", ap, err)
			}
			conn, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write([]byte("hi")); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 8)
			deadline := time.Now().Add(5 * time.Second)
			n, err := Read(fd, b)
			for err == unix.EAGAIN && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond) // polling a non-blocking socket, not synchronising
				n, err = Read(fd, b)
			}
			if err != nil || string(b[:n]) != "hi" {
				t.Fatalf("read %q, %v", b[:max(n, 0)], err)
			}
		})
	}
}

// TestDetachTakesSocketOutOfRuntimePoller: a listening socket registered in the runtime's
// poller (a net.Listener and an os.File duplicate of it) is in no foreign epoll set after
// Detach, stays in a Set's, and the listener still closes cleanly.
func TestDetachTakesSocketOutOfRuntimePoller(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File() // a second descriptor, as one kept for an upgrade
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rc, _ := ln.(*net.TCPListener).SyscallConn()
	lfd := -1
	rc.Control(func(s uintptr) { lfd = int(s) })
	s, err := NewSet[int](8)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Add(lfd, unix.EPOLLIN, 1); err != nil {
		t.Fatal(err)
	}
	if n := foreignWatchers(t, lfd); n == 0 {
		t.Skip("the runtime's poller does not watch the listener here")
	}
	if _, err := Detach(lfd); err != nil {
		t.Fatal(err)
	}
	if n := foreignWatchers(t, lfd); n != 0 {
		t.Fatalf("after Detach, %d registrations of the listener left in foreign epoll sets", n)
	}
	if len(watchedInode(s.epfd, inode(t, lfd))) != 1 {
		t.Fatal("Detach took the listener out of a Set")
	}
	if err := ln.Close(); err != nil {
		t.Fatalf("close after Detach: %v", err)
	}
}

// foreignWatchers is Watchers, failing the test on error.
func foreignWatchers(t *testing.T, fd int) int {
	t.Helper()
	n, err := Watchers(fd)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func inode(t *testing.T, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestNoDelayInheritedFromListener: this kernel copies TCP_NODELAY from a listening socket to
// the sockets accepted from it, which the loops rely on to skip a setsockopt per connection
// (and check again on each listener's first connection).
func TestNoDelayInheritedFromListener(t *testing.T) {
	lfd, err := Socket(unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	defer Close(lfd)
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lfd, 8); err != nil {
		t.Fatal(err)
	}
	if err := SetInt(lfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port)).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fd, _, err := Accept(lfd)
	for deadline := time.Now().Add(5 * time.Second); err == unix.EAGAIN && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond) // polling a non-blocking listener, not synchronising
		fd, _, err = Accept(lfd)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer Close(fd)
	if v, err := GetInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY); err != nil || v == 0 {
		t.Fatalf("accepted socket: TCP_NODELAY %d, %v; want it copied from the listener", v, err)
	}
}

// TestWaitHeld: a held wait reports events like Wait, returns 0 when its bound passes, and
// returns at once, interrupted, when a signal reaches its thread (as the runtime's preemption
// signal does), long before its bound.
func TestWaitHeld(t *testing.T) {
	s, err := NewSet[string](8)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if err := s.Add(fds[0], unix.EPOLLIN, "pipe"); err != nil {
		t.Fatal(err)
	}
	if n, _, err := s.WaitHeld(1); n != 0 || err != nil {
		t.Fatalf("nothing ready: %d events, %v", n, err)
	}
	unix.Write(fds[1], []byte("x"))
	n, interrupted, err := s.WaitHeld(10_000)
	if n != 1 || interrupted || err != nil {
		t.Fatalf("pipe readable: %d events, interrupted %v, %v", n, interrupted, err)
	}
	if v, ev, ok := s.Event(0); !ok || v != "pipe" || ev&unix.EPOLLIN == 0 {
		t.Fatalf("event: %q %#x %v", v, ev, ok)
	}
	unix.Read(fds[0], make([]byte, 1))

	runtime.LockOSThread() // the signals below go to this thread
	defer runtime.UnlockOSThread()
	pid, tid := unix.Getpid(), unix.Gettid()
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() { // signals until the wait has returned: one may land before it starts
		defer close(stopped)
		for {
			unix.Tgkill(pid, tid, unix.SIGURG)
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	n, interrupted, err = s.WaitHeld(60_000)
	close(done)
	<-stopped
	if n != 0 || !interrupted || err != nil {
		t.Fatalf("signalled during a 60 s wait: %d events, interrupted %v, %v", n, interrupted, err)
	}
}
