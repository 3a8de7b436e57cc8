//go:build linux

package listener

import (
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fulcrumlb/fulcrum/listener/internal/poll"
)

// TestLoopListenerNoDelay: every accepted socket ends up with TCP_NODELAY, whether the kernel
// copied it from the listening socket (then no call per connection) or not (then each
// connection gets its own, from the first one on).
func TestLoopListenerNoDelay(t *testing.T) {
	for _, tc := range []struct {
		name       string
		onListener bool // as newLoopListener sets it; without, as a kernel that does not copy it
		want       int32
	}{
		{"copied from the listener", true, nodelayInherited},
		{"not copied", false, nodelayPerConn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lfd, port := rawListener(t, tc.onListener)
			ll := &loopListener{}
			for i := 0; i < 3; i++ {
				fd := rawAccept(t, lfd, port)
				ll.noDelay(fd)
				if v, err := poll.GetInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY); err != nil || v == 0 {
					t.Fatalf("connection %d: TCP_NODELAY %d, %v", i, v, err)
				}
			}
			if got := ll.inherits.Load(); got != tc.want {
				t.Fatalf("listener state %d, want %d", got, tc.want)
			}
		})
	}
}

// rawListener is a non-blocking loopback listening socket, closed at cleanup, and its port.
func rawListener(t *testing.T, noDelay bool) (int, int) {
	t.Helper()
	lfd, err := poll.Socket(unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { poll.Close(lfd) })
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lfd, 8); err != nil {
		t.Fatal(err)
	}
	if noDelay {
		if err := poll.SetInt(lfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
			t.Fatal(err)
		}
	}
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		t.Fatal(err)
	}
	return lfd, sa.(*unix.SockaddrInet4).Port
}

// rawAccept connects a client to the listener and accepts it; both close at cleanup.
func rawAccept(t *testing.T, lfd, port int) int {
	t.Helper()
	conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fd, _, err := poll.Accept(lfd)
	for deadline := time.Now().Add(5 * time.Second); err == unix.EAGAIN && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond) // polling a non-blocking listener, not synchronising
		fd, _, err = poll.Accept(lfd)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { poll.Close(fd) })
	return fd
}

// TestLoopsListenerOutOfRuntimePoller: once the loops serve a listener, the runtime's poller
// no longer watches its socket (which would wake an idle thread per new connection), and
// connections are still served.
func TestLoopsListenerOutOfRuntimePoller(t *testing.T) {
	p := resPool(t, resBackend(t, resEcho))
	ls, addr := startLoops(t, 1, &Server{Picker: p})
	var fd int
	resEventually(t, "the listener is on the loops", func() bool {
		ls.mu.Lock()
		defer ls.mu.Unlock()
		if len(ls.listeners) == 0 {
			return false
		}
		fd = ls.listeners[0].fd
		return true
	})
	if n, err := poll.Watchers(fd); err != nil || n != 0 {
		t.Fatalf("the runtime's poller still watches the listener: %d registrations, %v", n, err)
	}
	c := resDial(t, addr)
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
		t.Fatalf("echo: %q, %v", b, err)
	}
}
