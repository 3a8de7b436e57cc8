package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// goPlane is the goroutine data plane: each accepted connection is owned by one goroutine
// running conn.serve (goplane_conn.go) over Go's netpoller, and its bytes move through the
// Server's DataPath. It tracks its listeners and connections for Shutdown and CloseBackend.
type goPlane struct {
	*Server           // the settings (embedded: conn reads s.Retries); set before serving, read only
	book    *connBook // counts, logs and tells every transition
	path    DataPath  // Server.DataPath, or the default Splice

	mu        sync.Mutex // guards which listeners and connections exist: listeners, conns, forced
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	forced    bool // Shutdown gave up waiting: refuse even connections already accepted

	closing atomic.Bool    // Shutdown has begun
	wg      sync.WaitGroup // one per tracked connection
	loops   sync.WaitGroup // one per running Serve: Shutdown waits for them before wg

	baseCtx    context.Context // cancelled when Shutdown gives up waiting: aborts dials and queues
	cancelBase context.CancelFunc
	done       chan struct{} // closed when Shutdown begins
	doneOnce   sync.Once
}

var _ plane = (*goPlane)(nil)

func newGoPlane(s *Server, bk *connBook) *goPlane {
	p := &goPlane{Server: s, book: bk, path: s.DataPath, done: make(chan struct{})}
	if p.path == nil {
		p.path = Splice{IdleTimeout: s.IdleTimeout} // made an interface once, not per connection
	}
	p.baseCtx, p.cancelBase = context.WithCancel(context.Background())
	return p
}

// Serve is the accept loop of one listener: it checks for Shutdown first, waits for room
// under the cap, and backs off from 5 ms doubling to 1 s on accept errors.
func (s *goPlane) Serve(ln net.Listener) error {
	if !s.trackListener(ln, true) {
		ln.Close()
		return ErrServerClosed
	}
	defer s.trackListener(ln, false)
	var backoff time.Duration
	for {
		if !s.takeSlot() {
			return ErrServerClosed
		}
		c, err := ln.Accept()
		if err != nil {
			s.freeSlot()
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return ErrServerClosed
			}
			backoff = nextAcceptBackoff(backoff)
			s.book.acceptFailed(err, backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.book.accepted()
		s.startConn(c)
	}
}

func (s *goPlane) startConn(nc net.Conn) {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		s.book.log(slog.LevelError, "listener is not TCP; closing connection", "client", nc.RemoteAddr())
		nc.Close()
		s.freeSlot()
		return
	}
	c := &conn{srv: s, client: tc}
	if !s.track(c, false) {
		tc.Close()
		s.freeSlot()
		return
	}
	go c.serve()
}

// adopt serves a connection an SNIRouter routed here; its cap slot is already taken.
func (s *goPlane) adopt(tc *net.TCPConn, info ConnInfo, prefix []byte) bool {
	c := &conn{srv: s, client: tc, info: info, routed: true, rest: prefix}
	if !s.track(c, true) {
		return false
	}
	go c.serve()
	return true
}

func (s *goPlane) trackListener(ln net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.listeners, ln)
		s.loops.Done()
		return true
	}
	if s.closing.Load() {
		return false
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.listeners[ln] = struct{}{}
	s.loops.Add(1)
	return true
}

// track registers a connection. A connection accepted while Shutdown begins is still served
// (during an upgrade it was meant for this process and nobody else will take it): Shutdown
// waits for the Serve loops to return before it waits on wg, so wg never grows from zero
// during that wait. Only once Shutdown has given up (forced) are new ones refused.
//
// A connection routed here by an SNIRouter is refused once Shutdown has begun: Shutdown may
// be waiting on wg already (closing is set before Shutdown takes mu, so under mu either the
// Add comes before that wait or closing is seen).
func (s *goPlane) track(c *conn, routed bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.forced || (routed && s.closing.Load()) {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

// untrack forgets a connection that has ended and frees its MaxConns slot.
func (s *goPlane) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.freeSlot()
	s.wg.Done()
}

// Shutdown stops accepting, then waits for established connections to end. When ctx ends
// first it closes them, waits for their goroutines and returns ctx's error. Calling it twice
// is safe.
func (s *goPlane) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.doneOnce.Do(func() { close(s.done) })
	s.mu.Lock()
	var errs []error
	for ln := range s.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("close listener %s: %w", ln.Addr(), err))
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.loops.Wait(); s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.closeAll()
		<-done
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}

// closeAll aborts every established connection and every dial in progress.
func (s *goPlane) closeAll() {
	s.cancelBase()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forced = true
	for c := range s.conns {
		c.client.Close()
		if b := c.backend.Load(); b != nil {
			b.Close()
		}
	}
}

// CloseBackend resets every connection going to the backend with the given key, including
// those still dialing it, and reports how many it closed.
func (s *goPlane) CloseBackend(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		if b := c.picked.Load(); b != nil && b.Key() == key {
			c.reset()
			n++
		}
	}
	return n
}

// ActiveConns is the number of client connections being served.
func (s *goPlane) ActiveConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// takeSlot waits for room under the cap before the next accept, so that at the cap clients
// queue in the kernel's backlog instead of being accepted and dropped. It returns false when
// Shutdown has begun. The slot is held while Accept waits for a client: with a cap shared by
// several listeners, each idle one keeps a slot (Go's listeners cannot be waited on without
// accepting). The event-loop plane takes a slot only for a client that is there.
func (s *goPlane) takeSlot() bool {
	lim := s.book.limit
	if lim == nil {
		return true
	}
	if lim.tryTake() {
		return true
	}
	s.book.limitReached()
	return lim.take(s.done)
}

// freeSlot gives back the slot of a connection that has ended or was never served.
func (s *goPlane) freeSlot() { s.book.freeSlot() }
