package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("listener: server closed")

// Server accepts client connections and proxies each to a backend chosen by Picker.
// Picker must be set; every other field's zero value is documented.
type Server struct {
	// Picker chooses and counts backends.
	Picker pool.Picker
	// ConnectTimeout bounds each dial to a backend; zero means 5s.
	ConnectTimeout time.Duration
	// Retries is how many other backends to try after a failed dial; zero means none.
	Retries int
	// DataPlane chooses how connections run: the zero value is PlaneGoroutine; PlaneEpoll
	// (Linux only; Serve fails elsewhere) runs them on event loops (dataplane.go).
	DataPlane DataPlane
	// Loops are the event loops PlaneEpoll runs on, shared by the Servers of one balancer;
	// nil means the Server starts DefaultLoops() of its own and stops them at Shutdown.
	Loops *EventLoops
	// DataPath moves the bytes on PlaneGoroutine; nil means Splice{IdleTimeout: IdleTimeout}.
	// PlaneEpoll moves them itself, the same way (16 KiB reads, splice for bulk).
	DataPath DataPath
	// IdleTimeout closes a connection on which no byte has moved either way for this long,
	// half-closed ones included (Traffic.Err is then ErrIdle); zero means never. On
	// PlaneGoroutine it applies when DataPath is nil.
	IdleTimeout time.Duration
	// Logger receives connection errors, rate-limited; nil means slog.Default().
	Logger *slog.Logger
	// Observer hears every connection's events (metrics, access log); nil means none.
	Observer Observer
	// MaxConns caps the connections served at once: at the cap Serve stops accepting, so new
	// clients wait in the kernel's backlog, and resumes below it. Zero means no cap.
	MaxConns int
	// QueueTimeout is how long a client waits for a slot when every backend is at its
	// connection limit (Picker.AcquireWait); zero means it is closed at once.
	QueueTimeout time.Duration
	// ProxyProtocol reads and writes PROXY protocol headers (proxyproto.go); zero means none.
	ProxyProtocol ProxyProtocol
	// Service names the service these listeners balance, for observers (ConnInfo.Service);
	// empty means the balancer has one service.
	Service string
	// Limit is a MaxConns cap shared with other Servers of the same balancer; nil means the
	// Server's own cap of MaxConns (MaxConns is ignored when Limit is set).
	Limit *ConnLimit
	// Totals is where the Server counts its Stats; nil means a count of its own. Servers of
	// one balancer share one, so its totals cover every service.
	Totals *Stats

	mu        sync.Mutex // guards which listeners and connections exist: listeners, conns, forced
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	forced    bool // Shutdown gave up waiting: refuse even connections already accepted

	closing atomic.Bool    // Shutdown has begun
	wg      sync.WaitGroup // one per tracked connection
	loops   sync.WaitGroup // one per running Serve: Shutdown waits for them before wg

	baseCtx    context.Context // cancelled when Shutdown gives up waiting: aborts dials and queues
	cancelBase context.CancelFunc
	initOnce   sync.Once
	done       chan struct{} // closed when Shutdown begins
	doneOnce   sync.Once
	book       *connBook // every connection's counters, log lines and events (connbook.go)

	eloops    loopPlane // this Server on the event loops, when DataPlane is PlaneEpoll
	eloopsErr error     // why it could not be made

	path DataPath // DataPath, or the default Splice
}

// Stats are the server's running totals.
type Stats struct {
	Accepted    atomic.Uint64 // client connections accepted
	Rejected    atomic.Uint64 // closed at once: no live backend
	Failed      atomic.Uint64 // closed: every dial failed
	DialErrors  atomic.Uint64 // failed dials, retries included
	ReleaseBugs atomic.Uint64 // releases the pool or the cap refused; always 0 unless counting is broken
	AcceptErrs  atomic.Uint64 // failed accepts (each followed by a backoff pause)
	QueueDrops  atomic.Uint64 // closed after waiting QueueTimeout with every backend full
}

// Stats returns the server's counters.
func (s *Server) Stats() *Stats {
	s.init()
	return s.book.stats
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.baseCtx, s.cancelBase = context.WithCancel(context.Background())
		s.done = make(chan struct{})
		s.book = newConnBook(s)
		s.path = s.DataPath
		if s.path == nil {
			s.path = Splice{IdleTimeout: s.IdleTimeout} // made an interface once, not per connection
		}
		if s.DataPlane == PlaneEpoll {
			el, own := s.Loops, s.Loops == nil
			if own {
				el = NewEventLoops(0)
			}
			s.eloops, s.eloopsErr = el.server(s, s.book, own)
		}
	})
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Server) connectTimeout() time.Duration {
	if s.ConnectTimeout > 0 {
		return s.ConnectTimeout
	}
	return 5 * time.Second
}

// Serve accepts connections on ln until Shutdown, which makes it return ErrServerClosed.
// Temporary accept errors (such as running out of descriptors) are retried with a backoff from
// 5 ms doubling to 1 s, logged at most once a second.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	if s.eloopsErr != nil {
		ln.Close()
		return s.eloopsErr
	}
	if s.eloops != nil {
		return s.eloops.Serve(ln)
	}
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

// nextAcceptBackoff is the pause after a failed accept: 5 ms, doubling to 1 s (both planes).
func nextAcceptBackoff(prev time.Duration) time.Duration {
	return min(max(2*prev, 5*time.Millisecond), time.Second)
}

func (s *Server) startConn(nc net.Conn) {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		s.book.log(slog.LevelError, "listener is not TCP; closing connection", "client", nc.RemoteAddr())
		nc.Close()
		s.freeSlot()
		return
	}
	c := &conn{srv: s, client: tc}
	if !s.track(c) {
		tc.Close()
		s.freeSlot()
		return
	}
	go c.serve()
}

func (s *Server) trackListener(ln net.Listener, add bool) bool {
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
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.forced {
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
func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.freeSlot()
	s.wg.Done()
}

// Shutdown stops accepting, then waits for established connections to end. When ctx ends
// first it closes them, waits for their goroutines and returns ctx's error. Calling it twice
// is safe.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	if s.eloops != nil {
		return s.eloops.Shutdown(ctx)
	}
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
func (s *Server) closeAll() {
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
// those still dialing it, and reports how many it closed. The admin API's remove?force=1 uses
// it after taking the backend out of picking.
func (s *Server) CloseBackend(key string) int {
	s.init()
	if s.eloops != nil {
		return s.eloops.CloseBackend(key)
	}
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
func (s *Server) ActiveConns() int {
	s.init()
	if s.eloops != nil {
		return s.eloops.ActiveConns()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}
