//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// runLight runs the load on l.loops threads and gathers their samples; it returns when every
// connection is closed. It fails only when the address is not an IP address and port.
func runLight(ctx context.Context, l lightLoad) (load, error) {
	if _, _, err := sockaddr(l.addr); err != nil {
		return load{}, err
	}
	start := time.Now()
	loops := min(max(l.loops, 1), l.conns)
	ws := make([]worker, loops)
	var wg sync.WaitGroup
	for i := range loops {
		conns := l.conns / loops
		if i < l.conns%loops {
			conns++
		}
		wg.Add(1)
		go func(w *worker) { // lightClientLoop: ends when its connections are closed
			defer wg.Done()
			runtime.LockOSThread() // the loop owns its thread; the lock ends with the goroutine
			defer runtime.UnlockOSThread()
			cl, err := newClientLoop(l, conns)
			if err != nil {
				w.fail(err)
				return
			}
			defer cl.close()
			cl.run(ctx)
			*w = cl.worker
		}(&ws[i])
	}
	wg.Wait()
	out := load{secs: time.Since(start).Seconds(), conns: l.conns}
	for i := range ws {
		out.samples = append(out.samples, ws[i].samples...)
		out.errs += ws[i].errs
		if out.firstErr == nil {
			out.firstErr = ws[i].firstErr
		}
	}
	return out, nil
}

// sockaddr parses "ip:port" for the raw connect.
func sockaddr(addr string) (unix.Sockaddr, int, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, 0, fmt.Errorf("bench: light client needs an ip:port, not %q: %w", addr, err)
	}
	if ap.Addr().Is4() || ap.Addr().Is4In6() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}, unix.AF_INET, nil
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}, unix.AF_INET6, nil
}

// clientLoop is one thread's share of the light client. Only its own goroutine touches it.
type clientLoop struct {
	lightLoad
	sa     unix.Sockaddr
	family int
	epfd   int
	req    []byte
	reply  int // bytes a whole reply has
	slots  []clientSlot
	events [64]unix.EpollEvent
	buf    [4096]byte // every read lands here; replies are counted, not kept
	worker
}

// clientSlot is one worker or persistent connection of a loop.
type clientSlot struct {
	fd    int    // -1 while no connection is open
	gen   uint32 // bumped per connection; carried in its epoll events to drop stale ones
	want  bool   // with fd -1: open a connection at the next turn
	sent  int    // bytes of the current request written
	got   int    // bytes of the current reply read
	start time.Time
}

// newClientLoop makes a loop for conns connections; it has its own socket address, which
// every connect writes into.
func newClientLoop(l lightLoad, conns int) (*clientLoop, error) {
	sa, family, err := sockaddr(l.addr)
	if err != nil {
		return nil, err
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("bench: epoll_create: %w", err)
	}
	cl := &clientLoop{lightLoad: l, sa: sa, family: family, epfd: epfd, slots: make([]clientSlot, conns)}
	cl.req, cl.reply = transactRequest(), replySize
	if l.kind == pingPong {
		cl.req, cl.reply = request(), msgSize
	}
	for i := range cl.slots {
		cl.slots[i] = clientSlot{fd: -1, want: true}
	}
	return cl, nil
}

func (cl *clientLoop) close() { unix.Close(cl.epfd) }

// run opens the connections and serves their events until none is open or wanted.
func (cl *clientLoop) run(ctx context.Context) {
	for {
		pending, failed := cl.refill()
		if !pending {
			return
		}
		now := time.Now()
		if now.After(cl.giveUp) || ctx.Err() != nil {
			cl.abandon(now)
			return
		}
		timeout := min(cl.giveUp.Sub(now), 100*time.Millisecond)
		if failed {
			timeout = time.Millisecond // paces retries after a failed connect
		}
		n, err := unix.EpollWait(cl.epfd, cl.events[:], int(timeout/time.Millisecond)+1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			cl.fail(fmt.Errorf("epoll_wait: %w", err))
			cl.abandon(now)
			return
		}
		for _, ev := range cl.events[:max(n, 0)] {
			s := &cl.slots[ev.Fd]
			if s.fd >= 0 && uint32(ev.Pad) == s.gen {
				cl.step(int(ev.Fd), ev.Events)
			}
		}
	}
}

// refill opens a connection for every slot that wants one (while the load runs) and says
// whether any slot is still open or wanting, and whether an open failed.
func (cl *clientLoop) refill() (pending, failed bool) {
	running := time.Now().Before(cl.end)
	for i := range cl.slots {
		s := &cl.slots[i]
		if s.fd < 0 && s.want {
			if !running {
				s.want = false
				continue
			}
			if err := cl.open(i); err != nil {
				cl.fail(err)
				failed = true
				s.want = cl.kind == transact
			}
		}
		pending = pending || s.fd >= 0 || s.want
	}
	return pending, failed
}

// open starts a non-blocking connect for slot i and registers it edge-triggered for reading
// and writing.
func (cl *clientLoop) open(i int) error {
	s := &cl.slots[i]
	s.start = time.Now()
	fd, err := unix.Socket(cl.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if err := unix.Connect(fd, cl.sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		return fmt.Errorf("connect %s: %w", cl.addr, err)
	}
	s.gen++
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(i), Pad: int32(s.gen)}
	if err := unix.EpollCtl(cl.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	s.fd, s.want, s.sent, s.got = fd, false, 0, 0
	return nil // the request goes out at the EPOLLOUT event that marks the connection up
}

// step moves slot i's connection on after an event: write what is left of the request, then,
// when the event says there is something to read, read.
func (cl *clientLoop) step(i int, events uint32) {
	if cl.slots[i].sent < len(cl.req) && !cl.send(i) {
		return
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		cl.receive(i)
	}
}

// send writes what is left of the request and says whether all of it is written. A write
// that would block (still connecting, or a full send buffer) waits for the EPOLLOUT edge.
func (cl *clientLoop) send(i int) bool {
	s := &cl.slots[i]
	for s.sent < len(cl.req) {
		n, err := unix.Write(s.fd, cl.req[s.sent:])
		if errors.Is(err, unix.EAGAIN) {
			return false
		}
		if err != nil {
			cl.drop(i, fmt.Errorf("request: %w", err))
			return false
		}
		s.sent += n
	}
	return true
}

// receive reads until the socket is drained (edge-triggered: the next event comes only for
// new data), the peer closed, or a ping-pong reply is whole and the next message is sent;
// the server sends nothing more until then, so nothing is left unread.
func (cl *clientLoop) receive(i int) {
	s := &cl.slots[i]
	for {
		n, err := unix.Read(s.fd, cl.buf[:])
		switch {
		case errors.Is(err, unix.EAGAIN):
			return
		case err != nil:
			cl.drop(i, fmt.Errorf("reply: %w", err))
			return
		case n == 0:
			cl.peerClosed(i)
			return
		}
		if s.got += n; s.got > cl.reply {
			cl.drop(i, fmt.Errorf("reply: %d bytes, want %d", s.got, cl.reply))
			return
		}
		if cl.kind == pingPong && s.got == cl.reply {
			if cl.pong(i) {
				cl.send(i)
			}
			return
		}
	}
}

// pong records a whole echo and arms the next message, or closes the connection when the
// load has ended; it says whether the connection goes on.
func (cl *clientLoop) pong(i int) bool {
	s := &cl.slots[i]
	now := time.Now()
	cl.record(now.Sub(s.start))
	if !now.Before(cl.end) {
		cl.closeSlot(i, false)
		return false
	}
	s.start, s.sent, s.got = now, 0, 0
	return true
}

// peerClosed handles the FIN: the end of a whole transaction, or a failure.
func (cl *clientLoop) peerClosed(i int) {
	s := &cl.slots[i]
	if cl.kind != transact || s.got != cl.reply || s.sent != len(cl.req) {
		cl.drop(i, fmt.Errorf("closed by peer after %d of %d reply bytes", s.got, cl.reply))
		return
	}
	cl.record(time.Since(s.start))
	cl.closeSlot(i, true)
}

func (cl *clientLoop) record(d time.Duration) {
	cl.samples = append(cl.samples, d)
	cl.ops.Add(1)
}

// drop closes a failed connection and counts the failure; a transact worker starts again.
func (cl *clientLoop) drop(i int, err error) {
	cl.fail(err)
	cl.closeSlot(i, cl.kind == transact)
}

// closeSlot closes slot i's connection (which also removes it from epoll); again says
// whether the slot opens another one at the next turn.
func (cl *clientLoop) closeSlot(i int, again bool) {
	s := &cl.slots[i]
	unix.Close(s.fd)
	s.fd, s.want = -1, again
}

// abandon closes what is still open when the load must end, counting each as failed.
func (cl *clientLoop) abandon(now time.Time) {
	for i := range cl.slots {
		if cl.slots[i].fd >= 0 {
			cl.fail(fmt.Errorf("no reply %v after the load ended", now.Sub(cl.end).Round(time.Millisecond)))
			cl.closeSlot(i, false)
		}
		cl.slots[i].want = false
	}
}
