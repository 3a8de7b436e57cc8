package listener

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/fulcrumlb/fulcrum/listener/clientlimit"
	"github.com/fulcrumlb/fulcrum/pool"
)

// conn owns one client connection from accept to close. Its goroutine runs serve; CloseBackend
// and a forced Shutdown reach it from other goroutines through picked and backend.
type conn struct {
	srv     *goPlane
	client  *net.TCPConn
	picked  atomic.Pointer[pool.Backend] // the backend being dialed or served; nil before the pick
	backend atomic.Pointer[net.TCPConn]  // the dialed socket; nil until a dial succeeds
	info    ConnInfo                     // owned by serve's goroutine; info.Backend's count is held while set
	routed  bool                         // adopted from an SNIRouter: info is set and rest holds the hello
	rest    []byte                       // client bytes already read, for the backend first
	ticket  clientlimit.Ticket           // the per-client bounds' claim, released by end
}

// serve is the connection's whole life, top to bottom: the inbound PROXY header (when the
// server accepts them), connect (pick, dial, retries), proxy until both directions end, then
// end: release the backend's count and untrack the connection.
func (c *conn) serve() {
	defer c.end()
	rest := c.rest // client bytes read past an inbound PROXY header, or the hello: the backend's
	var err error
	if !c.routed {
		c.info = ConnInfo{Service: c.srv.Service, Client: addrPort(c.client.RemoteAddr()), Local: addrPort(c.client.LocalAddr()), Start: time.Now()}
		if c.srv.ProxyProtocol.accepts() {
			rest, err = c.srv.readProxyHeader(c.client, &c.info) // proxyproto.go
		}
	}
	c.rest = nil
	if err == nil {
		c.ticket, err = c.srv.book.admit(c.info.Client.Addr(), time.Now()) // clientbounds.go
		if err != nil {
			c.client.Close() // counted by the bounds, not a rejection
			return
		}
		err = c.connect()
	}
	if err != nil {
		c.reject(err)
		return
	}
	c.proxy(rest)
}

// end runs last, whatever happened. A panic is a bug in one connection that must not take the
// balancer down with every other one: it is logged and the connection's sockets closed. Then
// the count is released: the sockets are closed by now, so the count covered the connection's
// whole life.
func (c *conn) end() {
	if v := recover(); v != nil {
		c.srv.book.panicked(c.client.RemoteAddr(), v, debug.Stack())
		c.client.Close()
		if b := c.backend.Load(); b != nil {
			b.Close()
		}
	}
	if c.info.Backend != nil {
		c.srv.book.release(c.info.Backend)
	}
	c.srv.book.releaseClient(c.ticket)
	c.srv.untrack(c)
}

// connect picks a backend and dials it, trying up to Retries other backends when a dial fails.
// On success the backend's count is held (c.info.Backend) until end; on failure nothing is held.
func (c *conn) connect() error {
	s := c.srv
	client := c.info.Client.Addr()
	var tried []*pool.Backend
	for attempt := 0; attempt <= s.Retries; attempt++ {
		b, err := s.acquire(client, tried)
		if err != nil {
			s.book.noBackend(c.info.Client, attempt > 0, err)
			return err
		}
		c.picked.Store(b)
		bc, err := s.dial(b)
		if err == nil {
			c.backend.Store(bc)
			c.info.Backend = b
			return nil
		}
		s.book.dialFailed(b, client, err)
		tried = append(tried, b)
	}
	return s.book.dialsExhausted(len(tried))
}

// proxy moves the bytes until both directions have ended and both sockets are closed. The
// meter is flushed in a defer, not by closed, so that a batching meter hands on its last bytes
// even after a panic.
func (c *conn) proxy(rest []byte) {
	s := c.srv
	m := s.book.opened(&c.info)
	if m != nil {
		defer m.Flush()
	}
	backend := c.backend.Load()
	var t Traffic
	if s.ProxyProtocol.Send != 0 || len(rest) > 0 {
		t = s.joinWithPrefix(c.client, backend, &c.info, rest, m) // proxyproto.go
	} else {
		t = s.path.Join(c.client, backend, m)
	}
	s.book.closed(&c.info, t, nil)
}

// reject closes a client that never reached a backend.
func (c *conn) reject(err error) {
	c.srv.book.rejected(c.info.Client, err)
	c.client.Close()
}

// reset closes both sockets with a reset, including a backend still being dialed (its client
// socket is closed, so the connection ends as soon as the dial returns).
func (c *conn) reset() {
	c.client.SetLinger(0) // fails only on a closed socket, which needs nothing more
	c.client.Close()
	if b := c.backend.Load(); b != nil {
		b.SetLinger(0)
		b.Close()
	}
}

// acquire picks a backend. When every backend is full the client waits up to QueueTimeout for
// a slot; Shutdown's final cancel ends the wait too.
func (s *goPlane) acquire(client netip.Addr, tried []*pool.Backend) (*pool.Backend, error) {
	b, err := s.Picker.Acquire(client, tried)
	if !errors.Is(err, pool.ErrFull) || s.QueueTimeout <= 0 {
		return b, err
	}
	ctx, cancel := context.WithTimeout(s.baseCtx, s.QueueTimeout)
	defer cancel()
	return s.Picker.AcquireWait(ctx, client, tried)
}

// dialed is the outcome of one dial.
type dialed struct {
	conn *net.TCPConn
	err  error
}

// dial connects to b on a short-lived goroutine of its own. A dial grows its goroutine's stack
// to 8 KiB or more; the connection's goroutine, which may then sit idle for hours, would keep
// that stack for its whole life (measured: 11.8 against 15.6 KiB per idle connection).
func (s *goPlane) dial(b *pool.Backend) (*net.TCPConn, error) {
	done := make(chan dialed, 1)
	go s.dialInto(b, done)
	d := <-done
	return d.conn, d.err
}

// dialInto is the dial's goroutine, named so stack dumps say what it is; it ends when the
// dial does (bounded by ConnectTimeout and by a forced Shutdown).
func (s *goPlane) dialInto(b *pool.Backend, done chan<- dialed) {
	c, err := s.dialNow(b)
	done <- dialed{c, err}
}

func (s *goPlane) dialNow(b *pool.Backend) (*net.TCPConn, error) {
	ctx, cancel := context.WithTimeout(s.baseCtx, s.connectTimeout())
	defer cancel()
	// No TCP keepalive: Go's default costs four setsockopt calls per dial, and the idle
	// timeout already ends dead connections.
	d := net.Dialer{KeepAlive: -1}
	c, err := d.DialContext(ctx, "tcp", b.DialAddress())
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", b.DialAddress(), err)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, errors.New("dial: not a TCP connection")
	}
	return tc, nil
}
