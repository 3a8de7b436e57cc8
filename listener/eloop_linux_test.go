//go:build linux

package listener

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fulcrumlb/fulcrum/internal/asynclog"
	"github.com/fulcrumlb/fulcrum/pool"
)

func TestLoopsEcho(t *testing.T) {
	p := resPool(t, resBackend(t, resEcho), resBackend(t, resEcho))
	e, addr := startLoops(t, 2, &Server{Picker: p})
	for i := range 20 {
		c := resDial(t, addr)
		if !resEchoes(t, c, strings.Repeat("x", i*1000+1)) {
			t.Fatalf("connection %d: no echo", i)
		}
		c.Close()
	}
	resEventually(t, "every connection ended", func() bool { return e.ActiveConns() == 0 })
	if n := e.book.stats.Accepted.Load(); n != 20 {
		t.Errorf("accepted %d, want 20", n)
	}
}

// TestLoopsHalfClose: each side's FIN is passed on while the other direction keeps flowing.
func TestLoopsHalfClose(t *testing.T) {
	t.Run("client first", func(t *testing.T) {
		reply := func(c *net.TCPConn) {
			got, _ := io.ReadAll(c) // until the client's FIN
			c.Write(bytes.ToUpper(got))
			c.CloseWrite()
		}
		p := resPool(t, resBackend(t, reply))
		_, addr := startLoops(t, 1, &Server{Picker: p})
		c := resDial(t, addr)
		c.Write([]byte("hello, backend"))
		c.CloseWrite()
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "HELLO, BACKEND" {
			t.Fatalf("reply after half-close: %q, %v", got, err)
		}
	})
	t.Run("backend first", func(t *testing.T) {
		seen := make(chan string, 1)
		p := resPool(t, resBackend(t, func(c *net.TCPConn) {
			c.Write([]byte("bye"))
			c.CloseWrite()
			got, _ := io.ReadAll(c)
			seen <- string(got)
		}))
		_, addr := startLoops(t, 1, &Server{Picker: p})
		c := resDial(t, addr)
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		got, err := io.ReadAll(c) // the backend's FIN arrives; our direction is still open
		if err != nil || string(got) != "bye" {
			t.Fatalf("greeting: %q, %v", got, err)
		}
		c.Write([]byte("still here"))
		c.CloseWrite()
		select {
		case s := <-seen:
			if s != "still here" {
				t.Fatalf("backend read %q after its FIN", s)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("client bytes never reached the half-closed backend")
		}
	})
}

// TestLoopsPanicIsolated: a panic while handling one connection resets that connection,
// releases its backend and leaves the loop serving the others.
func TestLoopsPanicIsolated(t *testing.T) {
	p := resPool(t, resBackend(t, resEcho))
	closed := make(chan Traffic, 10)
	e, addr := startLoops(t, 1, &Server{Picker: p, Observer: panicObserver{resObserver{closed}}})
	steady := resDial(t, addr)
	if !resEchoes(t, steady, "before") {
		t.Fatal("no echo before the panic")
	}
	victim := resDial(t, addr)
	victim.Write([]byte(strings.Repeat("p", panicSize)))
	if got := resWaitClosed(t, victim); len(got) != 0 {
		t.Fatalf("panicking connection echoed %q", got)
	}
	if !resEchoes(t, steady, "after") {
		t.Fatal("the loop stopped serving after a panic in another connection")
	}
	if !resEchoes(t, resDial(t, addr), "new") {
		t.Fatal("no new connection served after the panic")
	}
	resEventually(t, "victim released", func() bool { return resStatus(t, p, p.Snapshot()[0].Key).Active == 2 })
	if e.ActiveConns() != 2 {
		t.Fatalf("%d active connections, want 2", e.ActiveConns())
	}
}

// TestLoopsDescriptorsBackToStart drives a connection down every path that ends one, and
// counts the process's descriptors back to where they started once the plane has stopped.
func TestLoopsDescriptorsBackToStart(t *testing.T) {
	// The backends copy through user space: Go's own splice keeps pipes in a pool that only
	// the garbage collector empties, which would blur the count.
	echo := resBackend(t, func(c *net.TCPConn) {
		defer c.Close()
		io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c})
		c.CloseWrite()
	})
	hold := resBackend(t, func(c *net.TCPConn) {
		defer c.Close()
		io.Copy(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{c})
	})
	dead := resDeadAddr(t)
	start := fdSet(t)
	p := resPool(t, echo)
	e := newLoopServer(NewEventLoops(2), &Server{Picker: p, Logger: quiet, IdleTimeout: 200 * time.Millisecond,
		Observer: panicObserver{resObserver{make(chan Traffic, 100)}}, Retries: 1}, true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.Serve(ln) }()
	addr := ln.Addr().String()
	dial := func() *net.TCPConn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.TCPConn)
	}
	// Clean end, with a bulk transfer that takes a pipe.
	c := dial()
	if !resEchoes(t, c, strings.Repeat("b", 1<<20)) {
		t.Fatal("no bulk echo")
	}
	c.Close()
	// Client reset.
	c = dial()
	resEchoes(t, c, "r")
	c.SetLinger(0)
	c.Close()
	// Panic.
	c = dial()
	c.Write([]byte(strings.Repeat("p", panicSize)))
	if got := resWaitClosed(t, c); len(got) != 0 { // the meter panics before the bytes go on
		t.Fatalf("the panicking connection echoed %q: the panic path did not run", got)
	}
	c.Close()
	// Idle timeout.
	c = dial()
	resEchoes(t, c, "i")
	resWaitClosed(t, c)
	c.Close()
	// Failed dials (refused, then no backend left to try).
	addBackend(t, p, dead)
	deregister(t, p, echo)
	c = dial()
	resWaitClosed(t, c)
	c.Close()
	if e.book.stats.DialErrors.Load() == 0 {
		t.Fatal("no failed dial counted: the failed-dial path did not run")
	}
	// CloseBackend, then Shutdown's reset of a held connection.
	deregister(t, p, dead)
	addBackend(t, p, hold)
	c, c2 := dial(), dial()
	resEventually(t, "held connections", func() bool { return resStatus(t, p, hold).Active == 2 })
	if n := e.CloseBackend(hold); n != 2 {
		t.Fatalf("CloseBackend closed %d, want 2", n)
	}
	c.Close()
	c2.Close()
	c = dial()
	resEventually(t, "held connection", func() bool { return resStatus(t, p, hold).Active == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	e.Shutdown(ctx)
	<-served
	c.Close()
	assertPickerIdle(t, p)
	resEventually(t, "descriptors back to those at the start", func() bool { return len(newFDs(t, start)) == 0 })
}

func addBackend(t *testing.T, p *pool.Pool, addr string) {
	t.Helper()
	a, err := pool.ParseAddress(addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Register(a, 1); err != nil {
		t.Fatal(err)
	}
}

func deregister(t *testing.T, p *pool.Pool, key string) {
	t.Helper()
	if err := p.Deregister(key); err != nil {
		t.Fatal(err)
	}
}

// TestLoopIgnoresStaleEventOnReusedDescriptor: a connection closes and its descriptor number
// is reused at once by the next connection's backend socket; an event queued for the old one
// must not reach the new one (here: a stale EPOLLOUT would mark a still-connecting backend as
// connected).
func TestLoopIgnoresStaleEventOnReusedDescriptor(t *testing.T) {
	be := resBackend(t, resHold)
	p := resPool(t, be)
	el := NewEventLoops(1)
	el.notes = newNotifier()
	defer el.notes.stop()
	el.logs = asynclog.New(quiet.Handler(), 0)
	defer el.logs.Close()
	ls := newLoopServer(el, &Server{Picker: p, Logger: quiet}, false)
	l, err := newLoop(el, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.closeFDs()
	l.now = time.Now()
	ap := netip.MustParseAddrPort(be)
	for attempt := 0; attempt < 50; attempt++ {
		old := l.testConnecting(t, ls, p, ap)
		fd, gen := old.bfd, l.set.Gen(old.bfd)
		l.finish(old, errForced, true)
		fresh := l.testConnecting(t, ls, p, ap)
		if fresh.bfd != fd {
			l.finish(fresh, errForced, true)
			continue // another goroutine took the number first: try again
		}
		l.dispatchTagged(fd, gen, unix.EPOLLOUT)
		if fresh.state != stateConnecting {
			t.Fatalf("a stale event moved the new connection to state %d", fresh.state)
		}
		l.dispatchTagged(fd, l.set.Gen(fd), unix.EPOLLOUT)
		if fresh.state == stateConnecting {
			t.Fatal("the current event was not handled either: the test proves nothing")
		}
		l.finish(fresh, errForced, true)
		assertPickerIdle(t, p)
		return
	}
	t.Fatal("the descriptor number was never reused")
}

// dispatchTagged handles ev as epoll would report it for fd registered with generation gen.
func (l *loop) dispatchTagged(fd int, gen uint32, ev uint32) {
	if s, ok := l.set.Lookup(fd, gen); ok {
		l.dispatch(s, ev)
	}
}

// testConnecting makes a connection whose backend connect is in progress, with no client.
func (l *loop) testConnecting(t *testing.T, ls *loopServer, p *pool.Pool, ap netip.AddrPort) *loopConn {
	t.Helper()
	c := l.newConn(ls, -1)
	ls.active.Add(1) // as accepting it would
	l.conns.add(c)
	b, err := p.Acquire(netip.Addr{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.backend = b
	l.dialAddr(c, ap)
	if c.state != stateConnecting {
		t.Fatalf("connect did not start: state %d", c.state)
	}
	return c
}

// TestLoopsSlowReaderHoldsNoMemory: a backend pushes 256 MiB to a client that reads 4 KiB
// every 10 ms. Back-pressure must leave the bytes in the kernel: the process's resident
// memory grows by less than 4 MiB while the client crawls. Then the client reads the rest at
// full speed and every byte is checked. The crawl lasts 3 s (the whole transfer at that pace
// would take 11 minutes; memory would have grown long before).
func TestLoopsSlowReaderHoldsNoMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("slow reader: seconds of crawling")
	}
	const total, blockSize = 256 << 20, 1 << 20
	block := make([]byte, blockSize)
	rand.Read(block)
	want := sha256.New()
	for range total / blockSize {
		want.Write(block)
	}
	p := resPool(t, resBackend(t, func(c *net.TCPConn) {
		for range total / blockSize {
			if _, err := c.Write(block); err != nil {
				return
			}
		}
		c.CloseWrite()
	}))
	_, addr := startLoops(t, 1, &Server{Picker: p})
	c := resDial(t, addr)
	got := sha256.New()
	buf := make([]byte, 64<<10)
	c.SetReadDeadline(time.Now().Add(time.Minute))
	n, err := io.ReadFull(c, buf[:4<<10]) // the transfer is under way
	if err != nil {
		t.Fatal(err)
	}
	got.Write(buf[:n])
	runtime.GC()
	debug.FreeOSMemory()
	base, peak := residentBytes(t), 0
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		n, err := io.ReadFull(c, buf[:4<<10])
		if err != nil {
			t.Fatal(err)
		}
		got.Write(buf[:n])
		peak = max(peak, residentBytes(t))
		time.Sleep(10 * time.Millisecond)
	}
	if growth := peak - base; growth >= 4<<20 {
		t.Errorf("resident memory grew by %d KiB under a slow reader, want < 4096", growth>>10)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(got, struct{ io.Reader }{c}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("the bytes that arrived are not the bytes sent")
	}
}

// residentBytes is the process's resident set size, from /proc/self/statm.
func residentBytes(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skipf("no /proc/self/statm: %v", err)
	}
	f := strings.Fields(string(b))
	pages, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatal(err)
	}
	return pages * os.Getpagesize()
}

// TestSharedLoopsServeSeveralServers: the Servers of one balancer (one per service) run on one
// set of event loops; each connection is served with its own Server's settings, CloseBackend
// and Shutdown reach only that Server's connections, and a shared cap counts them all.
func TestSharedLoopsServeSeveralServers(t *testing.T) {
	loops := NewEventLoops(2)
	t.Cleanup(loops.Stop) // first registered, so it runs after every Server's Shutdown, as Stop wants
	limit := NewConnLimit(3)
	serve := func(name string, backend string) (*Server, string) {
		s := &Server{Picker: resPool(t, backend), Service: name, Logger: quiet, DataPlane: PlaneEpoll, Loops: loops, Limit: limit}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go s.Serve(ln)
		t.Cleanup(func() { // teardown: reset what is still open (held by the backends)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			s.Shutdown(ctx)
		})
		return s, ln.Addr().String()
	}
	tag := func(tag string) func(c *net.TCPConn) {
		return func(c *net.TCPConn) { c.Write([]byte(tag)); resHold(c) }
	}
	beA, beB := resBackend(t, tag("A")), resBackend(t, tag("B"))
	a, addrA := serve("a", beA)
	b, addrB := serve("b", beB)
	greeting := func(c *net.TCPConn) string {
		buf := make([]byte, 1)
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil {
			return err.Error()
		}
		return string(buf)
	}
	ca1, ca2, cb := resDial(t, addrA), resDial(t, addrA), resDial(t, addrB)
	if g1, g2, g3 := greeting(ca1), greeting(ca2), greeting(cb); g1 != "A" || g2 != "A" || g3 != "B" {
		t.Fatalf("greetings %q %q %q, want A A B: a connection went to another service", g1, g2, g3)
	}
	over := resDial(t, addrB) // the shared cap of 3 is reached: it waits in the backlog
	over.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, _ := over.Read(make([]byte, 1)); n != 0 || b.ActiveConns() != 1 {
		t.Fatalf("a fourth connection was served over a shared cap of 3 (%d active on b)", b.ActiveConns())
	}
	if n := b.CloseBackend(beA); n != 0 {
		t.Fatalf("b's CloseBackend closed %d connections of a", n)
	}
	if n := a.CloseBackend(beA); n != 2 {
		t.Fatalf("a's CloseBackend closed %d, want 2", n)
	}
	if g := greeting(over); g != "B" { // two slots freed: the waiting client is served
		t.Fatalf("waiting client got %q after slots freed, want B", g)
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Write([]byte("x")); err != nil || b.ActiveConns() != 2 {
		t.Fatalf("b lost its connections when a shut down (%d active)", b.ActiveConns())
	}
}

// TestLoopsShutdownWaitsForConnectionAcceptedAsItBegins: a connection that ended after Shutdown
// began, just before the listeners were taken out of the loops, must not let Shutdown think
// the connections accepted since are gone: they are served to their end, not reset.
func TestLoopsShutdownWaitsForConnectionAcceptedAsItBegins(t *testing.T) {
	p := resPool(t, resBackend(t, resEcho))
	ls, addr := startLoops(t, 1, &Server{Picker: p})
	x := resDial(t, addr)
	if !resEchoes(t, x, "x") {
		t.Fatal("no echo")
	}
	ls.closing.Store(true) // Shutdown has begun; the loops still accept
	x.Close()
	resEventually(t, "first connection ended", func() bool { return ls.ActiveConns() == 0 })
	z := resDial(t, addr)
	if !resEchoes(t, z, "z") {
		t.Fatal("no echo")
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		done <- ls.Shutdown(ctx)
	}()
	resEventually(t, "listener closed", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if !resEchoes(t, z, "still served") {
		t.Fatal("a connection accepted as Shutdown began was cut")
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) with a connection still open", err)
	default:
	}
	z.Close()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// releasePanicker is a pool whose first Release panics after giving the count back.
type releasePanicker struct {
	*pool.Pool
	panicked atomic.Bool
}

func (r *releasePanicker) Release(b *pool.Backend) error {
	err := r.Pool.Release(b)
	if r.panicked.CompareAndSwap(false, true) {
		panic("release")
	}
	return err
}

// TestLoopsPanicInFinishGivesTheSlotBack: a panic while a connection is being finished (in
// the Picker, here) still takes it off the loop and gives its --max-conns slot back, so the
// next client is served.
func TestLoopsPanicInFinishGivesTheSlotBack(t *testing.T) {
	p := &releasePanicker{Pool: resPool(t, resBackend(t, resEcho))}
	_, addr := startLoops(t, 1, &Server{Picker: p, Limit: NewConnLimit(1)})
	first := resDial(t, addr)
	if !resEchoes(t, first, "first") {
		t.Fatal("no echo on the first connection")
	}
	first.Close()
	resEventually(t, "the first connection finished", func() bool { return p.panicked.Load() })
	second := resDial(t, addr)
	defer second.Close()
	if !resEchoes(t, second, "second") {
		t.Fatal("the slot of the connection whose finish panicked was never given back")
	}
}
