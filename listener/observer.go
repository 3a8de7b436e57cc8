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

// QuickCloser is an Observer whose Closed, and whose Meters' Flush, cost what Opened and
// Meter.Moved cost: a few atomic adds, no I/O, no lock held across anything slow. The event
// loops then call them on the loop as a connection ends, instead of queueing them for a
// goroutine that must be woken: under connection load, a connection's end wakes nothing
// outside its loop. Closed may then come before Rejected and DialFailed events (still
// queued) of earlier connections. Observers is one when every observer in it is.
type QuickCloser interface {
	Observer
	// QuickClose declares the capability; it is never called.
	QuickClose()
}

// closesQuickly reports whether o's Closed may run on an event loop: o is a QuickCloser, or
// an Observers of QuickClosers only.
func closesQuickly(o Observer) bool {
	switch o := o.(type) {
	case Observers:
		for _, x := range o {
			if !closesQuickly(x) {
				return false
			}
		}
		return true
	case QuickCloser:
		return true
	}
	return false
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
func (os Observers) Opened(c *ConnInfo) Meter { return os.open(c, nil) }

// open is Opened with a place for the meters when two or more observers return one: set, kept
// in the connection's own struct by a plane that can (the event loops), so that fanning out
// costs no allocation per connection; nil means one is allocated when needed.
func (os Observers) open(c *ConnInfo, set *meterSet) Meter {
	var first Meter
	n := 0
	for _, o := range os {
		m := o.Opened(c)
		if m == nil {
			continue
		}
		switch n {
		case 0:
			first = m
		case 1:
			if set == nil {
				set = new(meterSet)
			}
			set.reset()
			set.add(first)
			set.add(m)
		default:
			set.add(m)
		}
		n++
	}
	switch n {
	case 0:
		return nil
	case 1:
		return first
	}
	return set
}

// Closed implements Observer.
func (os Observers) Closed(c *ConnInfo, t Traffic) {
	for _, o := range os {
		o.Closed(c, t)
	}
}

// meterSet is the Meter of Observers when more than one observer returns one. fulcrum's own
// observers (the backends' byte totals, metrics, the access log) return at most two, which
// it holds in place; a third and later ones go to a meterList allocated in the second's slot.
// Small, because each loop connection holds one (its size class is its idle memory).
type meterSet struct {
	ms [2]Meter
	n  int
}

func (s *meterSet) reset() { *s = meterSet{} }

func (s *meterSet) add(m Meter) {
	if s.n < len(s.ms) {
		s.ms[s.n] = m
		s.n++
		return
	}
	tail, ok := s.ms[1].(*meterList)
	if !ok {
		tail = &meterList{s.ms[1]}
		s.ms[1] = tail
	}
	*tail = append(*tail, m)
}

func (s *meterSet) Moved(up bool, n int64) {
	for _, m := range s.ms[:s.n] {
		m.Moved(up, n)
	}
}

func (s *meterSet) Flush() {
	for _, m := range s.ms[:s.n] {
		m.Flush()
	}
}

// meterList is the meters of a meterSet beyond its array.
type meterList []Meter

func (ms *meterList) Moved(up bool, n int64) {
	for _, m := range *ms {
		m.Moved(up, n)
	}
}

func (ms *meterList) Flush() {
	for _, m := range *ms {
		m.Flush()
	}
}
