//go:build linux

package listener

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A backend that answers and then resets — because it closed with bytes unread, set
// SO_LINGER to zero, or its kernel had no TIME_WAIT slot left for the closed socket and
// answered the FIN passed on to it with a reset — has still sent its answer: the bytes sit in
// the balancer's backend socket, ahead of the reset. They must reach the client; a reset must
// not throw them away. Only a backend that reset before its FIN leaves the client a reset.
//
// The event loops are held (holdLoops) while the backend answers and resets, so that the
// loop finds the answer, the FIN and the reset all at once in its backend socket, as a loop
// busy with other connections does: the order is forced, not left to luck.

func TestRelayDeliversAnswerBeforeBackendReset(t *testing.T) {
	eachPlane(t, testRelayDeliversAnswerBeforeBackendReset)
}

func testRelayDeliversAnswerBeforeBackendReset(t *testing.T) {
	cases := []struct {
		name string
		// finFirst: the backend sends its FIN, waits for it to be acknowledged, then resets;
		// otherwise it resets right after the answer is acknowledged, without a FIN.
		finFirst bool
		// clientFIN: the client's FIN reaches the balancer before the answer does, so the
		// loop passes it on to a backend socket that is already reset.
		clientFIN bool
		// clientMore: more client bytes reach the balancer before the answer does, so the
		// loop writes them to a backend socket that is already reset.
		clientMore bool
		size       int // of the answer: 16 KiB or more goes through splice
	}{
		{"answer FIN reset", true, false, false, 1 << 10},
		{"answer FIN reset bulk", true, false, false, 40 << 10},
		{"client FIN then answer FIN reset", true, true, false, 1 << 10},
		{"client FIN then answer FIN reset bulk", true, true, false, 40 << 10},
		{"client bytes then answer FIN reset", true, false, true, 1 << 10},
		{"answer reset", false, false, false, 1 << 10},
		{"answer reset bulk", false, false, false, 40 << 10},
		{"client FIN then answer reset", false, true, false, 1 << 10},
		{"client bytes then answer reset", false, false, true, 1 << 10},
		{"client bytes then answer reset bulk", false, false, true, 40 << 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			answer := bytes.Repeat([]byte("answer-"), tc.size/7+1)[:tc.size]
			be := newResettingBackend(t, answer, tc.finFirst)
			obs := resObserver{closed: make(chan Traffic, 1)}
			loops := youngLoops(t)
			s, addr := resProxy(t, resPool(t, be.addr), func(s *Server) { s.Observer, s.Loops = obs, loops })
			c := resDial(t, addr)
			if _, err := c.Write([]byte("request")); err != nil {
				t.Fatal(err)
			}
			be.requested(t)
			held := holdLoops(t, s)
			if tc.clientFIN {
				if err := c.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				held.waitClient(t, unix.BPF_TCP_CLOSE_WAIT)
			}
			if tc.clientMore {
				if _, err := c.Write([]byte("more")); err != nil {
					t.Fatal(err)
				}
				held.waitClientBytes(t)
			}
			// With no loop to hold, the client's bytes and FIN go on at once: the backend
			// answers after they came, or the goroutine plane would race passing them on
			// against the reset.
			be.readFirst = len(held.loops) == 0 && (tc.clientFIN || tc.clientMore)
			be.answer(t)
			held.waitBackend(t, unix.BPF_TCP_CLOSE) // the reset has reached the balancer
			held.release()

			c.SetReadDeadline(time.Now().Add(15 * time.Second))
			got, err := io.ReadAll(c)
			if !bytes.Equal(got, answer) {
				t.Fatalf("the client got %d bytes of the %d-byte answer (then %v): the answer the backend sent before its reset was lost", len(got), len(answer), err)
			}
			c.Close()
			var tr Traffic
			select {
			case tr = <-obs.closed:
			case <-time.After(15 * time.Second):
				t.Fatal("the connection did not end within 15s of the client's close")
			}
			if tc.finFirst {
				if err != nil {
					t.Fatalf("after the answer and its FIN the client got %v, want EOF: the backend's stream ended before its reset", err)
				}
				return
			}
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("after the answer the client got %v, want a reset: the backend reset before its FIN, the answer may be cut short", err)
			}
			// On the goroutine plane, passing the client's FIN on to the reset backend may fail
			// first: the end is then that failure.
			if tr.Err == nil || planeOf(t) != PlaneGoroutine && EndReason(tr.Err) != "reset" {
				t.Errorf("the connection ended with %v, want a reset", tr.Err)
			}
		})
	}
}

// TestRelayDeliversAnswerToSlowReaderBeforeBackendReset: a backend sends a large answer and
// its FIN, then resets, before a client with a small receive buffer has read any of it. The
// balancer has taken the answer off its backend socket (or the kernel has, on a promoted
// connection), but most of it still waits in its client socket's send queue, or in the
// kernel's: the reset, whether it comes with the FIN or after the FIN was passed on, must
// not reset the client, which would throw that queue away. The loops are not held: the
// backend waits for its FIN to be acknowledged before it resets, so the FIN is most often
// passed on before the reset comes, an order holding the loops cannot give.
func TestRelayDeliversAnswerToSlowReaderBeforeBackendReset(t *testing.T) {
	eachPlane(t, testRelayDeliversAnswerToSlowReaderBeforeBackendReset)
}

func testRelayDeliversAnswerToSlowReaderBeforeBackendReset(t *testing.T) {
	answer := bytes.Repeat([]byte("slow-answer-"), (1<<20)/12)
	reset := make(chan error, 1)
	backend := func(c *net.TCPConn) {
		if _, err := io.ReadFull(c, make([]byte, len("request"))); err != nil {
			reset <- err
			return
		}
		reset <- answerThenReset(c, answer, true)
	}
	s, addr := resProxy(t, resPool(t, resBackend(t, backend)), nil)
	c := dialSmallReceiveBuffer(t, addr) // keeps the answer in the balancer
	t.Cleanup(func() { c.Close() })
	if planeOf(t) == planeSockmapNow {
		resEventually(t, "the connection to be promoted", func() bool { return kernelRelayed(s) == 1 })
	}
	if _, err := c.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-reset:
		if err != nil {
			t.Fatalf("backend: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the backend did not answer and reset within 15s")
	}
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, answer) {
		t.Fatalf("the client got %d bytes of the %d-byte answer, then %v; want all of it, then EOF", len(got), len(answer), err)
	}
}

// kernelRelayed is how many of s's connections the kernel relays (sockmap plane).
func kernelRelayed(s *Server) int {
	s.Stats() // s.plane is set, and visible here
	ls, ok := s.plane.(*loopServer)
	if !ok {
		return 0
	}
	return ls.el.SockmapStats().InKernel
}

// resettingBackend reads a request, then, when told, writes its answer and resets the
// connection: after its FIN is acknowledged (finFirst), or as soon as the answer is.
type resettingBackend struct {
	addr     string
	got      chan struct{} // a request was read
	proceed  chan struct{} // closed by letGo: write the answer and reset
	goOnce   sync.Once
	finished chan error // the reset is sent
	// readFirst: read what the client sent after the request (its FIN, or "more") before
	// answering; set before letGo.
	readFirst bool
}

func newResettingBackend(t *testing.T, answer []byte, finFirst bool) *resettingBackend {
	b := &resettingBackend{got: make(chan struct{}, 1), proceed: make(chan struct{}), finished: make(chan error, 1)}
	b.addr = resBackend(t, func(c *net.TCPConn) {
		if _, err := io.ReadFull(c, make([]byte, len("request"))); err != nil {
			b.finished <- err
			return
		}
		b.got <- struct{}{}
		<-b.proceed
		if b.readFirst {
			if err := readAfterRequest(c); err != nil {
				b.finished <- err
				return
			}
		}
		b.finished <- answerThenReset(c, answer, finFirst)
	})
	t.Cleanup(b.letGo) // before the backend's cleanup waits for the handler
	return b
}

// youngLoops are the event loops of a sockmap-plane test Server whose connections all stay on
// the user-space relay, however slow the machine: this is a test of that relay. Nil on
// other planes (the Server makes its own).
func youngLoops(t *testing.T) *EventLoops {
	t.Helper()
	if planeOf(t) != PlaneSockmap {
		return nil
	}
	el, err := NewSockmapLoops(1, SockmapConfig{After: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(el.Stop) // after the Server's shutdown, registered later
	return el
}

// readAfterRequest reads the client's FIN, or its "more".
func readAfterRequest(c *net.TCPConn) error {
	var more [len("more")]byte
	n, err := io.ReadFull(c, more[:])
	if n == 0 && err == io.EOF {
		return nil
	}
	return err
}

func answerThenReset(c *net.TCPConn, answer []byte, finFirst bool) error {
	if _, err := c.Write(answer); err != nil {
		return err
	}
	acked := func(info *unix.TCPInfo) bool { return info.Unacked == 0 && info.Notsent_bytes == 0 }
	if finFirst {
		if err := c.CloseWrite(); err != nil {
			return err
		}
		acked = func(info *unix.TCPInfo) bool { // FIN_WAIT2, or closed if the client's FIN came first
			return info.State == unix.BPF_TCP_FIN_WAIT2 || info.State == unix.BPF_TCP_CLOSE
		}
	}
	if err := waitTCPInfo(c, acked); err != nil {
		return err
	}
	c.SetLinger(0)
	return c.Close()
}

// waitTCPInfo polls c's TCP_INFO until cond holds, for 15 s at most.
func waitTCPInfo(c *net.TCPConn, cond func(*unix.TCPInfo) bool) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		var info *unix.TCPInfo
		var ierr error
		if err := rc.Control(func(fd uintptr) {
			info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		}); err != nil {
			return err
		}
		if ierr != nil {
			return ierr
		}
		if cond(info) {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("backend socket: state not reached within 15s")
		}
		time.Sleep(time.Millisecond)
	}
}

// letGo lets the handler go on; safe to call twice.
func (b *resettingBackend) letGo() { b.goOnce.Do(func() { close(b.proceed) }) }

// requested waits for the backend to have read the request.
func (b *resettingBackend) requested(t *testing.T) {
	t.Helper()
	select {
	case <-b.got:
	case err := <-b.finished:
		t.Fatalf("backend: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("the request did not reach the backend within 15s")
	}
}

// answer lets the backend answer and reset, and waits until it has.
func (b *resettingBackend) answer(t *testing.T) {
	t.Helper()
	b.letGo()
	select {
	case err := <-b.finished:
		if err != nil {
			t.Fatalf("backend: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the backend did not answer within 15s")
	}
}

// heldLoops are the event loops of a Server, each held in a task of the test's until
// release: events meanwhile wait in the epoll sets. On the goroutine plane nothing is held.
type heldLoops struct {
	loops   []*loop
	release func()
}

// holdLoops holds s's event loops, if it runs on them. Cleanup releases them.
func holdLoops(t *testing.T, s *Server) *heldLoops {
	t.Helper()
	s.Stats() // s.plane is set, and visible here
	h := &heldLoops{release: func() {}}
	ls, ok := s.plane.(*loopServer)
	if !ok {
		return h
	}
	ls.el.mu.Lock()
	h.loops = ls.el.loops
	ls.el.mu.Unlock()
	free := make(chan struct{})
	var once sync.Once
	h.release = func() { once.Do(func() { close(free) }) }
	t.Cleanup(h.release)
	for _, l := range h.loops {
		held := make(chan struct{})
		if !l.post(func(*loop) { close(held); <-free }) {
			t.Fatal("an event loop has ended")
		}
		<-held
	}
	return h
}

// waitClient and waitBackend wait until the TCP state of the balancer's client or backend
// socket of the one relayed connection is state. On the goroutine plane they, and
// waitClientBytes, return at once.
func (h *heldLoops) waitClient(t *testing.T, state uint8)  { h.waitState(t, true, state) }
func (h *heldLoops) waitBackend(t *testing.T, state uint8) { h.waitState(t, false, state) }

func (h *heldLoops) waitState(t *testing.T, client bool, state uint8) {
	t.Helper()
	h.waitSocket(t, client, "the balancer's socket reaches its state", func(fd int) bool {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		return err == nil && info.State == state
	})
}

// waitClientBytes waits until the client's "more" has reached the balancer's client socket:
// it waits there to be read, or, on a promoted connection, the kernel has taken it on.
func (h *heldLoops) waitClientBytes(t *testing.T) {
	t.Helper()
	h.waitSocket(t, true, "the client's bytes reach the balancer", func(fd int) bool {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		return err == nil && info.Bytes_received >= uint64(len("request")+len("more"))
	})
}

// waitSocket polls cond on the balancer's client or backend socket of the one relayed
// connection (the loops are held: their connections can be read).
func (h *heldLoops) waitSocket(t *testing.T, client bool, what string, cond func(fd int) bool) {
	t.Helper()
	if len(h.loops) == 0 {
		return
	}
	fd := -1
	for _, l := range h.loops {
		l.conns.each(func(c *loopConn) {
			if c.state == stateRelaying {
				fd = c.cfd
				if !client {
					fd = c.bfd
				}
			}
		})
	}
	if fd < 0 {
		t.Fatal("no relayed connection on the loops")
	}
	resEventually(t, what, func() bool { return cond(fd) })
}
