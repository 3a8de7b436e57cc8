package listener

import (
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
