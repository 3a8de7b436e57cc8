//go:build linux

package listener

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/fulcrumlb/fulcrum/listener/internal/poll"
	"github.com/fulcrumlb/fulcrum/pool"
)

// admitThenConnect asks the per-client bounds about a new connection first (clientbounds.go):
// a refused one is closed at once, before any pick.
func (l *loop) admitThenConnect(c *loopConn) {
	tk, err := c.srv.book.admit(c.info.Client.Addr(), l.now)
	if err != nil {
		l.finish(c, nil, false) // counted by the bounds, not a rejection
		return
	}
	c.ticket = tk
	l.connect(c)
}

// connect picks a backend for c and dials it; when every backend is full it queues c.
func (l *loop) connect(c *loopConn) {
	b, err := c.srv.cfg.Picker.Acquire(c.info.Client.Addr(), c.tried)
	if errors.Is(err, pool.ErrFull) && c.srv.cfg.QueueTimeout > 0 {
		l.queue(c)
		return
	}
	if err != nil {
		l.noBackend(c, err)
		return
	}
	l.dial(c, b)
}

// noBackend closes a client no backend can take.
func (l *loop) noBackend(c *loopConn, err error) {
	c.srv.book.noBackend(c.info.Client, len(c.tried) > 0, err)
	l.finish(c, err, false)
}

// queue parks c until a backend has room: a goroutine waits in the Picker's FIFO queue (the
// loop must not) and posts what it got back to the loop.
func (l *loop) queue(c *loopConn) {
	c.state = stateQueued
	c.pinned = true // awaitSlot holds it
	ctx, cancel := context.WithTimeout(c.srv.base, c.srv.cfg.QueueTimeout)
	c.cancel = cancel
	c.token++
	token, client, tried := c.token, c.info.Client.Addr(), slices.Clone(c.tried)
	c.srv.async.Add(1)
	go l.awaitSlot(ctx, c.srv, c, token, client, tried)
}

// awaitSlot is a queued connection's waiting goroutine. It ends when a slot is found, the
// queue timeout passes, or the connection ends (its cancel).
func (l *loop) awaitSlot(ctx context.Context, ls *loopServer, c *loopConn, token uint32, client netip.Addr, tried []*pool.Backend) {
	defer ls.async.Done()
	b, err := ls.cfg.Picker.AcquireWait(ctx, client, tried)
	if !l.post(func(l *loop) { l.slotFound(c, token, b, err) }) && b != nil {
		ls.book.release(b) // the loop has ended: nobody else will
	}
}

func (l *loop) slotFound(c *loopConn, token uint32, b *pool.Backend, err error) {
	if c.state != stateQueued || c.token != token {
		if b != nil {
			c.srv.book.release(b)
		}
		return
	}
	defer l.recoverConn(c)
	c.cancel()
	c.cancel = nil
	if err != nil {
		l.noBackend(c, err)
		return
	}
	l.dial(c, b)
}

// dial starts a non-blocking connect to b, whose count c now holds, bounded by the connect
// timeout. A backend named by DNS is looked up off the loop first.
func (l *loop) dial(c *loopConn, b *pool.Backend) {
	c.backend = b
	l.timers.set(c, l.now.Add(c.srv.cfg.connectTimeout()))
	ap, err := netip.ParseAddrPort(b.DialAddress())
	if err != nil {
		l.resolve(c, b.DialAddress())
		return
	}
	l.dialAddr(c, ap)
}

func (l *loop) dialAddr(c *loopConn, ap netip.AddrPort) {
	fd, err := poll.Socket(poll.Family(ap))
	if err != nil {
		l.dialFailed(c, fmt.Errorf("dial %s: %w", ap, os.NewSyscallError("socket", err)))
		return
	}
	c.bfd = fd
	poll.SetInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err := poll.Connect(fd, ap); err != nil && err != unix.EINPROGRESS {
		l.dialFailed(c, fmt.Errorf("dial %s: %w", ap, os.NewSyscallError("connect", err)))
		return
	}
	// Connected or not, EPOLLOUT comes once the outcome is known.
	if err := l.register(fd, relayEvents, slot{kind: slotBackend, c: c}); err != nil {
		l.dialFailed(c, fmt.Errorf("dial %s: %w", ap, err))
		return
	}
	c.state = stateConnecting
}

// connectDone reads the outcome of the connect.
func (l *loop) connectDone(c *loopConn, ev uint32) {
	if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 { // a failed connect always raises EPOLLERR
		if err := poll.SocketError(c.bfd, "connect"); err != nil {
			l.dialFailed(c, fmt.Errorf("dial %s: %w", c.backend.DialAddress(), err))
			return
		}
	}
	if ev&unix.EPOLLOUT == 0 {
		return // not yet: the edge with the outcome is still to come
	}
	l.connected(c, ev)
}

// connected ends the connect step once the backend has accepted: the dial is booked (passive
// health, the Observer's Opened), the idle deadline starts, and the relay takes the pair,
// with what must reach the backend first.
func (l *loop) connected(c *loopConn, ev uint32) {
	l.timers.clear(c)
	c.info.Backend = c.backend
	c.state = stateRelaying
	c.meter = c.srv.book.openedInto(&c.info, &c.meters)
	c.lastActive = clock(l.now)
	if idle := c.srv.cfg.IdleTimeout; idle > 0 {
		l.timers.set(c, l.now.Add(idle))
	}
	h, err := c.handoff(ev)
	if err != nil {
		l.finish(c, err, true)
		return
	}
	l.relay.start(l, c, h)
}

// dialFailed gives the failed backend back, tells health checking, and tries the next-best
// backend while retries are left.
func (l *loop) dialFailed(c *loopConn, err error) {
	l.timers.clear(c)
	if c.cancel != nil {
		c.cancel()
		c.cancel = nil
	}
	l.closeFD(c.bfd)
	c.bfd = -1
	b := c.backend
	c.backend = nil
	c.srv.book.dialFailed(b, c.info.Client.Addr(), err) // on the loop, before the next pick
	c.tried = append(c.tried, b)
	if len(c.tried) <= c.srv.cfg.Retries {
		c.state = stateConnecting // until connect decides otherwise
		l.connect(c)
		return
	}
	l.finish(c, c.srv.book.dialsExhausted(len(c.tried)), false)
}

// resolve looks a backend's name up on a goroutine (DNS would block the loop) and posts the
// address back; the connect timeout, already running, bounds it.
func (l *loop) resolve(c *loopConn, hostport string) {
	c.state = stateResolving
	c.pinned = true // lookup holds it
	ctx, cancel := context.WithCancel(c.srv.base)
	c.cancel = cancel
	c.token++
	token := c.token
	c.srv.async.Add(1)
	go l.lookup(ctx, c.srv, c, token, hostport)
}

// lookup is a resolving connection's goroutine; it ends with the lookup or the connection.
func (l *loop) lookup(ctx context.Context, ls *loopServer, c *loopConn, token uint32, hostport string) {
	defer ls.async.Done()
	ap, err := lookupAddrPort(ctx, hostport)
	l.post(func(l *loop) { l.resolved(c, token, ap, err) })
}

func lookupAddrPort(ctx context.Context, hostport string) (netip.AddrPort, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dial %s: %w", hostport, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dial %s: port: %w", hostport, err)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dial %s: %w", hostport, err)
	}
	if len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("dial %s: no address", hostport)
	}
	return netip.AddrPortFrom(ips[0], uint16(port)), nil
}

func (l *loop) resolved(c *loopConn, token uint32, ap netip.AddrPort, err error) {
	if c.state != stateResolving || c.token != token {
		return
	}
	defer l.recoverConn(c)
	c.cancel()
	c.cancel = nil
	if err != nil {
		l.dialFailed(c, err)
		return
	}
	l.dialAddr(c, ap)
}
