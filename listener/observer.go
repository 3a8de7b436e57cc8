package listener

import (
	"errors"
	"net/netip"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// ConnInfo describes one proxied connection, from the dial to the close.
type ConnInfo struct {
	Service string         // the Server's Service: the name of the service the client came to
	Client  netip.AddrPort // the client's address (from a trusted PROXY header, if any)
	Peer    netip.AddrPort // the TCP peer, when a PROXY header named another Client; else zero
	Local   netip.AddrPort // the address the client connected to
	Backend *pool.Backend
	Start   time.Time // when the client was accepted
	SNI     string    // the TLS server name read on an SNI-routed address (SNIRouter); else empty
}

// Observer hears about connections for metrics and logs. Its methods run on the connection's
// own goroutine and must not block.
type Observer interface {
	// Rejected: a client was closed without reaching a backend (err says why).
	Rejected(client netip.AddrPort, err error)
	// DialFailed: a dial to b failed; the connection may still go to another backend.
	DialFailed(b *pool.Backend, err error)
	// Opened: the backend is dialed and bytes are about to flow. The Meter returned (nil for
	// none) hears the bytes of this connection as they move.
	Opened(c *ConnInfo) Meter
	// Closed: both directions ended and both sockets are closed.
	Closed(c *ConnInfo, t Traffic)
}

// Meter is told how many bytes moved, chunk by chunk, while a connection runs, so counters
// can move before the connection ends. Moved is called from both directions' goroutines.
type Meter interface {
	Moved(up bool, n int64) // up: client → backend
	// Flush is called once, after both directions have ended (just after Observer.Closed):
	// a meter records there what covers the whole connection (metrics: its lifetime on the
	// backend it measured), or hands on what it batched.
	Flush()
}

// Traffic is what a joined connection carried and how it ended.
type Traffic struct {
	Up   int64 // bytes client → backend
	Down int64 // bytes backend → client
	Err  error // the first error in either direction; nil when both ended with FIN
}

// ErrIdle is the Traffic.Err of a connection closed by the idle timeout (Server.IdleTimeout,
// Splice.IdleTimeout), on either plane.
var ErrIdle = errors.New("idle timeout")

// Observers fans events out to several observers.
type Observers []Observer

var _ Observer = Observers(nil)

// Rejected implements Observer.
func (os Observers) Rejected(client netip.AddrPort, err error) {
	for _, o := range os {
		o.Rejected(client, err)
	}
}

// DialFailed implements Observer.
func (os Observers) DialFailed(b *pool.Backend, err error) {
	for _, o := range os {
		o.DialFailed(b, err)
	}
}

// Opened implements Observer; the Meter it returns feeds every observer's meter.
func (os Observers) Opened(c *ConnInfo) Meter {
	ms := make(meters, 0, len(os)) // one allocation, not one per append
	for _, o := range os {
		if m := o.Opened(c); m != nil {
			ms = append(ms, m)
		}
	}
	switch len(ms) {
	case 0:
		return nil
	case 1:
		return ms[0]
	}
	return ms
}

// Closed implements Observer.
func (os Observers) Closed(c *ConnInfo, t Traffic) {
	for _, o := range os {
		o.Closed(c, t)
	}
}

type meters []Meter

func (ms meters) Moved(up bool, n int64) {
	for _, m := range ms {
		m.Moved(up, n)
	}
}

func (ms meters) Flush() {
	for _, m := range ms {
		m.Flush()
	}
}
