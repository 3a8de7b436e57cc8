package listener

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrumlb/fulcrum/listener/clientlimit"
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
	// Loops are the event loops PlaneEpoll runs on, shared by the Servers of one balancer
	// (PlaneSockmap: loops from NewSockmapLoops); nil means the Server starts DefaultLoops()
	// of its own and stops them at Shutdown.
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
	// Clients keeps each client address within the service's bounds (connections open,
	// new connections a second, allow and deny lists), checked before any pick; nil means none.
	Clients *clientlimit.Table
	// ClientObserver hears the connections Clients refused; nil means none.
	ClientObserver ClientObserver

	initOnce sync.Once
	book     *connBook // every connection's counters, log lines and events (connbook.go)
	plane    plane     // runs the connections: goPlane or the event loops (newPlane)
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
		s.book = newConnBook(s)
		s.plane = s.newPlane()
	})
}

// newPlane is the one place where the data plane is chosen.
func (s *Server) newPlane() plane {
	switch s.DataPlane {
	case PlaneEpoll, PlaneSockmap, planeSockmapNow:
		el, own := s.Loops, s.Loops == nil
		if own {
			var err error
			if el, err = ownLoops(s.DataPlane); err != nil {
				return failedPlane{err}
			}
		}
		p, err := el.server(s, s.book, own)
		if err != nil {
			return failedPlane{err}
		}
		return p
	default:
		return newGoPlane(s, s.book)
	}
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
	return s.plane.Serve(ln)
}

// nextAcceptBackoff is the pause after a failed accept: 5 ms, doubling to 1 s (both planes).
func nextAcceptBackoff(prev time.Duration) time.Duration {
	return min(max(2*prev, 5*time.Millisecond), time.Second)
}

// Shutdown stops accepting, then waits for established connections to end. When ctx ends
// first it closes them, waits for their goroutines and returns ctx's error. Calling it twice
// is safe.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	return s.plane.Shutdown(ctx)
}

// CloseBackend resets every connection going to the backend with the given key, including
// those still dialing it, and reports how many it closed. The admin API's remove?force=1 uses
// it after taking the backend out of picking.
func (s *Server) CloseBackend(key string) int {
	s.init()
	return s.plane.CloseBackend(key)
}

// ActiveConns is the number of client connections being served.
func (s *Server) ActiveConns() int {
	s.init()
	return s.plane.ActiveConns()
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}
