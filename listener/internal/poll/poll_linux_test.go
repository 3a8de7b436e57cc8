package poll

import (
	"net/netip"
	"testing"

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

// TestSockaddrRoundTrip: an IPv4-mapped address connects as IPv4.
func TestSockaddrRoundTrip(t *testing.T) {
	fam, sa := Sockaddr(netip.MustParseAddrPort("[::ffff:127.0.0.1]:80"))
	if fam != unix.AF_INET {
		t.Fatalf("family %d", fam)
	}
	if s4 := sa.(*unix.SockaddrInet4); s4.Port != 80 || s4.Addr != [4]byte{127, 0, 0, 1} {
		t.Fatalf("%+v", s4)
	}
}
