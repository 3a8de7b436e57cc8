package listener

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/fulcrumlb/fulcrum/listener/internal/tlshello"
	"github.com/fulcrumlb/fulcrum/listener/sniroute"
)

// SNIRouter shares one listen address among several Servers by the server name of each
// client's TLS ClientHello (SNI passthrough): it accepts, reads the hello without answering,
// looks the name up in Routes and hands the connection, with the bytes read, to the chosen
// Server, which sends those bytes to its backend first and then relays as usual.
//
//	t, _ := sniroute.Build(":443", []sniroute.Service[*listener.Server]{
//		{Name: "api", Patterns: api, Value: apiSrv}, {Name: "web", Value: webSrv}})
//	r := &listener.SNIRouter{Listen: ":443", Routes: t, Limit: shared}
//	go r.Serve(ln)
//	...
//	r.Shutdown(ctx) // before the Servers' own Shutdown
//
// The router owns a connection only until it is routed: reading the PROXY header (when
// ProxyProtocol accepts them) and the hello, bounded by HelloTimeout, on a goroutine of its
// own whichever plane the Servers run. Nothing is picked or dialed before routing. A
// connection is counted as accepted once (Totals); a refused one is counted once, by the
// Observer (SNIRefused), and reset.
//
// The cap travels with the connection: the router takes a slot of Limit before it accepts,
// and the chosen Server frees it when the connection ends. Every Server of Routes must
// therefore share that cap (Server.Limit == Limit, or both none); NewSNIRouter checks it.
type SNIRouter struct {
	// Listen names the shared address in metrics and logs.
	Listen string
	// Routes maps server names to the Servers sharing the address.
	Routes *sniroute.Table[*Server]
	// HelloTimeout bounds the whole hello; zero means 5s.
	HelloTimeout time.Duration
	// ProxyProtocol says whose inbound PROXY headers are read before the hello (its Accept
	// and HeaderTimeout); the chosen Server's Send still applies. Zero: none.
	ProxyProtocol ProxyProtocol
	// Limit is the connection cap shared with every routed Server; nil means none.
	Limit *ConnLimit
	// Totals counts the accepted connections (Stats.Accepted) and accept errors; nil: its own.
	Totals *Stats
	// Observer hears each routing decision; nil means none.
	Observer SNIObserver
	// Logger receives refusals and accept errors, rate-limited; nil means slog.Default().
	Logger *slog.Logger

	initOnce sync.Once
	book     *connBook // the router's accept counts and log gates (no Picker)
	logSNI   rate.Sometimes

	mu        sync.Mutex // guards listeners, conns
	listeners map[net.Listener]struct{}
	conns     map[*net.TCPConn]struct{} // reading a hello
	closing   bool
	done      chan struct{} // closed when Shutdown begins
	wg        sync.WaitGroup
}

// SNIObserver hears how an SNIRouter routed or refused each connection. Its methods run on
// the connection's goroutine and must not block.
type SNIObserver interface {
	// SNIRouted: the connection goes to service; byDefault when no pattern chose it.
	SNIRouted(listen, service string, byDefault bool)
	// SNIRefused: the connection was reset: reason is "no_default", "malformed", "timeout"
	// or "too_large".
	SNIRefused(listen, reason string)
}

// Reasons for SNIObserver.SNIRefused.
const (
	SNINoDefault = "no_default"
	SNIMalformed = tlshello.ReasonMalformed
	SNITooLarge  = tlshello.ReasonTooLarge
	SNITimeout   = "timeout"
)

// CheckSNIServers says whether servers can share one SNIRouter with cap limit.
func CheckSNIServers(limit *ConnLimit, servers ...*Server) error {
	for _, s := range servers {
		if s.Limit != limit || (limit == nil && s.MaxConns > 0) {
			return fmt.Errorf("listener: service %q does not share its router's connection cap", s.Service)
		}
	}
	return nil
}

var helloBufs = sync.Pool{New: func() any { return new([tlshello.BufferSize]byte) }}

func (r *SNIRouter) init() {
	r.initOnce.Do(func() {
		r.book = newConnBook(&Server{Totals: r.Totals, Limit: r.Limit, Logger: r.Logger})
		r.logSNI = rate.Sometimes{Interval: time.Second}
		r.done = make(chan struct{})
	})
}

func (r *SNIRouter) helloTimeout() time.Duration {
	if r.HelloTimeout > 0 {
		return r.HelloTimeout
	}
	return 5 * time.Second
}

// Serve accepts on ln until Shutdown, which makes it return ErrServerClosed; accept errors
// back off from 5 ms doubling to 1 s, as Server.Serve.
func (r *SNIRouter) Serve(ln net.Listener) error {
	r.init()
	if !r.trackListener(ln, true) {
		ln.Close()
		return ErrServerClosed
	}
	defer r.trackListener(ln, false)
	var backoff time.Duration
	for {
		if !r.takeSlot() {
			return ErrServerClosed
		}
		c, err := ln.Accept()
		if err != nil {
			r.book.freeSlot()
			if r.isClosing() || errors.Is(err, net.ErrClosed) {
				return ErrServerClosed
			}
			backoff = nextAcceptBackoff(backoff)
			r.book.acceptFailed(err, backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		r.book.accepted()
		tc, ok := c.(*net.TCPConn)
		if !ok || !r.track(tc, true) {
			c.Close()
			r.book.freeSlot()
			continue
		}
		go r.route(tc)
	}
}

func (r *SNIRouter) takeSlot() bool {
	lim := r.book.limit
	if lim == nil || lim.tryTake() {
		return true
	}
	r.book.limitReached()
	return lim.take(r.done)
}

func (r *SNIRouter) isClosing() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closing
}

func (r *SNIRouter) trackListener(ln net.Listener, add bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !add {
		delete(r.listeners, ln)
		return true
	}
	if r.closing {
		return false
	}
	if r.listeners == nil {
		r.listeners = make(map[net.Listener]struct{})
	}
	r.listeners[ln] = struct{}{}
	return true
}

// track adds (or, add false, forgets) a connection whose hello is being read.
func (r *SNIRouter) track(c *net.TCPConn, add bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !add {
		delete(r.conns, c)
		r.wg.Done()
		return true
	}
	if r.conns == nil {
		r.conns = make(map[*net.TCPConn]struct{})
	}
	r.conns[c] = struct{}{}
	r.wg.Add(1)
	return true
}

// ActiveConns is the number of connections whose hello is being read.
func (r *SNIRouter) ActiveConns() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// Shutdown stops accepting and waits for the hellos being read to be routed or refused; when
// ctx ends first it resets them. Call it before the routed Servers' Shutdown: a connection
// routed to a Server already shutting down is reset. Calling it twice is safe.
func (r *SNIRouter) Shutdown(ctx context.Context) error {
	r.init()
	r.mu.Lock()
	var errs []error
	if !r.closing {
		r.closing = true
		close(r.done)
	}
	for ln := range r.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("close listener %s: %w", ln.Addr(), err))
		}
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		r.mu.Lock()
		for c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		<-done
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}

// route is the goroutine of one connection until it is routed: read, look up, hand over.
func (r *SNIRouter) route(c *net.TCPConn) {
	handed := false
	defer func() {
		if v := recover(); v != nil {
			r.book.panicked(c.RemoteAddr(), v, debug.Stack())
			c.Close()
		}
		if !handed {
			r.book.freeSlot()
		}
		r.track(c, false)
	}()
	info := ConnInfo{Client: addrPort(c.RemoteAddr()), Local: addrPort(c.LocalAddr()), Start: time.Now()}
	buf := helloBufs.Get().(*[tlshello.BufferSize]byte)
	srv, hello, reason := r.readRoute(c, &info, buf[:])
	helloBufs.Put(buf)
	if reason != "" {
		r.refuse(c, info, reason)
		return
	}
	if handed = srv.adopt(c, info, hello); !handed {
		resetConn(c)
	}
}

// readRoute reads the PROXY header (when expected) and the hello, and chooses the Server. It
// returns the bytes read, for the backend, or why the connection is refused.
func (r *SNIRouter) readRoute(c *net.TCPConn, info *ConnInfo, buf []byte) (*Server, []byte, string) {
	var rest []byte
	if r.ProxyProtocol.accepts() {
		var err error
		if rest, err = r.ProxyProtocol.read(c, info); err != nil {
			r.book.headerRefused(info.Client, err)
			return nil, nil, SNIMalformed
		}
	}
	var hr tlshello.Reader
	hr.Reset(buf)
	hr.Advance(copy(hr.Free(), rest))
	if err := c.SetReadDeadline(time.Now().Add(r.helloTimeout())); err != nil {
		return nil, nil, SNIMalformed
	}
	st, err := hr.Fill(c)
	if err == nil {
		err = c.SetReadDeadline(time.Time{})
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, nil, SNITimeout
	case err != nil:
		return nil, nil, SNIMalformed
	case st == tlshello.Refused:
		return nil, nil, hr.Reason()
	}
	name := hr.ServerName() // empty when not TLS or no name was sent
	srv, how := r.Routes.Lookup(name)
	if how == sniroute.NoRoute {
		info.SNI = string(name)
		return nil, nil, SNINoDefault
	}
	info.SNI = string(name)
	if r.Observer != nil {
		r.Observer.SNIRouted(r.Listen, srv.Service, how == sniroute.Default)
	}
	return srv, bytes.Clone(hr.Bytes()), ""
}

// refuse resets a connection that no Server takes, and counts it.
func (r *SNIRouter) refuse(c *net.TCPConn, info ConnInfo, reason string) {
	if r.Observer != nil {
		r.Observer.SNIRefused(r.Listen, reason)
	}
	r.logSNI.Do(func() {
		r.book.log(slog.LevelWarn, "refusing client: TLS server name", "listen", r.Listen, "client", info.Client, "sni", info.SNI, "reason", reason)
	})
	resetConn(c)
}

// resetConn closes c with a reset.
func resetConn(c *net.TCPConn) {
	c.SetLinger(0) // fails only on a closed socket, which needs nothing more
	c.Close()
}

// adopt takes over a connection an SNIRouter accepted and routed here, with its cap slot:
// the Server's plane picks, dials, sends prefix first and relays. False: the Server is
// shutting down and did not take it (the caller resets it and frees the slot).
func (s *Server) adopt(c *net.TCPConn, info ConnInfo, prefix []byte) bool {
	s.init()
	info.Service = s.Service
	return s.plane.adopt(c, info, prefix)
}
