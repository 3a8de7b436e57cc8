package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"time"

	"golang.org/x/time/rate"

	"github.com/fulcrumlb/fulcrum/listener/clientlimit"
	"github.com/fulcrumlb/fulcrum/pool"
)

// connBook tells the life of every connection of one Server, whichever plane runs it: each
// transition (accepted, accept failed, limit reached, no backend, dial failed, opened, header
// refused, released, closed) is one method that counts it, logs it at a bounded rate and tells
// the Observer. The planes move bytes and events; they never count or log on their own, so a
// new counter or log line is written once.
//
// Its methods are safe for concurrent use: the goroutine plane calls them from each
// connection's goroutine, the event loops from their threads. They never block when the sink
// does not: on the loops, events and log lines leave through the loops' notifier.
type connBook struct {
	picker pool.Picker
	obs    Observer   // nil: none
	fan    Observers  // obs when it is an Observers: its meters can go in the connection's struct
	quick  bool       // obs closes quickly (QuickCloser): Closed is called at once, on any plane
	stats  *Stats     // Server.Totals, or a count of the Server's own
	limit  *ConnLimit // Server.Limit, or one made from MaxConns; nil when there is no cap
	logger *slog.Logger
	sink   eventSink // how Observer events and log lines leave: at once, or off the loop

	clients   *clientlimit.Table // Server.Clients; nil: no per-client bounds (clientbounds.go)
	clientObs ClientObserver     // nil: none
	service   string             // Server.Service, for the ClientObserver

	logNoPeer  rate.Sometimes
	logDialErr rate.Sometimes
	logAccept  rate.Sometimes
	logLimit   rate.Sometimes
	logHeader  rate.Sometimes // refused inbound PROXY headers: a flood gets a line a second
	logClient  rate.Sometimes // per-client refusals
}

// eventSink delivers what the book tells: on the goroutine plane at once (directSink), on the
// event loops through their notifier, since a loop must not wait for an Observer or a log.
type eventSink interface {
	log(logger *slog.Logger, level slog.Level, msg string, args ...any)
	rejected(o Observer, client netip.AddrPort, err error)
	dialFailed(o Observer, b *pool.Backend, err error)
	// closed calls o.Closed, then flushes m when it is not nil, then tells r (when not nil)
	// that nothing holds info or m any more.
	closed(o Observer, info *ConnInfo, t Traffic, m Meter, r reusable)
}

// reusable is a connection's memory (its ConnInfo and the meters of its Meter live in it),
// which a plane may reuse for another connection once the Observer's last call is over.
type reusable interface {
	// reuse: nothing holds a pointer into it any more. It may be called on any goroutine.
	reuse()
}

// newConnBook binds a book to s's settings; the plane may replace its sink.
func newConnBook(s *Server) *connBook {
	bk := &connBook{
		picker:     s.Picker,
		obs:        s.Observer,
		stats:      s.Totals,
		limit:      s.Limit,
		logger:     s.logger(),
		sink:       directSink{},
		logNoPeer:  rate.Sometimes{Interval: time.Second},
		logDialErr: rate.Sometimes{Interval: time.Second},
		logAccept:  rate.Sometimes{Interval: time.Second},
		logLimit:   rate.Sometimes{Interval: time.Second},
		logHeader:  rate.Sometimes{Interval: time.Second},
		logClient:  rate.Sometimes{Interval: time.Second},
		clients:    s.Clients,
		clientObs:  s.ClientObserver,
		service:    s.Service,
	}
	bk.fan, _ = s.Observer.(Observers)
	bk.quick = closesQuickly(s.Observer)
	if bk.limit == nil {
		bk.limit = NewConnLimit(s.MaxConns)
	}
	if bk.stats == nil {
		bk.stats = new(Stats)
	}
	return bk
}

func (bk *connBook) log(level slog.Level, msg string, args ...any) {
	bk.sink.log(bk.logger, level, msg, args...)
}

// accepted: a client connection was accepted.
func (bk *connBook) accepted() { bk.stats.Accepted.Add(1) }

// acceptFailed: accepting failed with err; the plane retries after retryIn.
func (bk *connBook) acceptFailed(err error, retryIn time.Duration) {
	bk.stats.AcceptErrs.Add(1)
	bk.logAccept.Do(func() { bk.log(slog.LevelError, "accept failed", "err", err, "retry_in", retryIn) })
}

// limitReached: the Server is at its connection cap and stops accepting.
func (bk *connBook) limitReached() {
	bk.logLimit.Do(func() {
		bk.log(slog.LevelWarn, "connection limit reached; accepting paused", "max_conns", bk.limit.Max())
	})
}

// freeSlot gives back the cap's slot of a connection that has ended or was never served.
func (bk *connBook) freeSlot() {
	if bk.limit != nil && !bk.limit.free() {
		bk.stats.ReleaseBugs.Add(1)
	}
}

// noBackend: no backend could take the client (err from the Picker); retried says some were
// tried and failed. The client is then closed (rejected).
func (bk *connBook) noBackend(client netip.AddrPort, retried bool, err error) {
	switch {
	case errors.Is(err, pool.ErrFull):
		bk.stats.QueueDrops.Add(1)
		bk.logNoPeer.Do(func() {
			bk.log(slog.LevelWarn, "every backend is full; closing client", "client", client, "err", err)
		})
	case retried:
		bk.stats.Failed.Add(1) // tried some, none left to try
	default:
		bk.stats.Rejected.Add(1)
		bk.logNoPeer.Do(func() { bk.log(slog.LevelWarn, "rejecting client", "client", client, "err", err) })
	}
}

// dialFailed: the dial to b, whose count the connection held, failed. Passive health hears it
// first, before the next pick, so a dead backend is out of picking at once; then the count is
// given back.
func (bk *connBook) dialFailed(b *pool.Backend, client netip.Addr, err error) {
	bk.picker.ReportDial(b, err)
	bk.release(b)
	bk.stats.DialErrors.Add(1)
	if bk.obs != nil {
		bk.sink.dialFailed(bk.obs, b, err)
	}
	bk.logDialErr.Do(func() {
		bk.log(slog.LevelWarn, "backend dial failed", "backend", b.Key(), "client", client, "err", err)
	})
}

// dialsExhausted: every dial the retries allowed (n of them) failed; the error ends the client.
func (bk *connBook) dialsExhausted(n int) error {
	bk.stats.Failed.Add(1)
	return fmt.Errorf("%d dials failed", n)
}

// opened: the dial to info.Backend succeeded and bytes are about to flow. It returns the
// Observer's Meter for the connection (nil for none).
func (bk *connBook) opened(info *ConnInfo) Meter { return bk.openedInto(info, nil) }

// openedInto is opened for a plane that keeps a meterSet in each connection's struct: when
// several observers return meters, set holds them (until the connection's last Flush) instead
// of memory allocated for the connection. A nil set is opened's.
func (bk *connBook) openedInto(info *ConnInfo, set *meterSet) Meter {
	bk.picker.ReportDial(info.Backend, nil)
	switch {
	case bk.fan != nil:
		return bk.fan.open(info, set)
	case bk.obs == nil:
		return nil
	}
	return bk.obs.Opened(info)
}

// headerRefused: the client's inbound PROXY header (or its absence) refused it.
func (bk *connBook) headerRefused(client netip.AddrPort, err error) {
	bk.logHeader.Do(func() {
		bk.log(slog.LevelWarn, "refusing client: PROXY header", "client", client, "err", err)
	})
}

// rejected: a client was closed without reaching a backend.
func (bk *connBook) rejected(client netip.AddrPort, err error) {
	if bk.obs != nil {
		bk.sink.rejected(bk.obs, client, err)
	}
}

// release gives back the count on b that a connection held.
func (bk *connBook) release(b *pool.Backend) {
	if err := bk.picker.Release(b); err != nil {
		bk.stats.ReleaseBugs.Add(1)
		bk.log(slog.LevelError, "connection count out of step", "backend", b.Key(), "err", err)
	}
}

// closed: an opened connection ended, both sockets closed; m (may be nil) is flushed after.
func (bk *connBook) closed(info *ConnInfo, t Traffic, m Meter) { bk.closedReuse(info, t, m, nil) }

// closedReuse is closed for a connection whose memory r is to be reused (nil: none): r hears
// when the Observer is done with info and m, at once when there is no Observer.
func (bk *connBook) closedReuse(info *ConnInfo, t Traffic, m Meter, r reusable) {
	switch {
	case bk.obs == nil:
		if r != nil {
			r.reuse()
		}
	case bk.quick:
		bk.closeNow(info, t, m, r)
	default:
		bk.sink.closed(bk.obs, info, t, m, r)
	}
}

// closeNow calls a QuickCloser's Closed and Flush on the caller's goroutine, an event loop's
// included; a panicking observer is logged, as the notifier logs it, not fatal to the loop.
func (bk *connBook) closeNow(info *ConnInfo, t Traffic, m Meter, r reusable) {
	defer func() {
		if v := recover(); v != nil {
			bk.log(slog.LevelError, "panic in connection observer", "panic", v, "stack", string(debug.Stack()))
		}
	}()
	directSink{}.closed(bk.obs, info, t, m, r)
}

// panicked: a bug while serving one connection; the plane closes it. client is the plane's
// own form of the client's address.
func (bk *connBook) panicked(client any, v any, stack []byte) {
	bk.log(slog.LevelError, "panic serving connection", "client", client, "panic", v, "stack", string(stack))
}

// directSink delivers at once, on the caller's goroutine: the goroutine plane's connections
// each have their own, which may wait.
type directSink struct{}

func (directSink) log(logger *slog.Logger, level slog.Level, msg string, args ...any) {
	logger.Log(context.Background(), level, msg, args...)
}

func (directSink) rejected(o Observer, client netip.AddrPort, err error) { o.Rejected(client, err) }

func (directSink) dialFailed(o Observer, b *pool.Backend, err error) { o.DialFailed(b, err) }

func (directSink) closed(o Observer, info *ConnInfo, t Traffic, m Meter, r reusable) {
	o.Closed(info, t)
	if m != nil {
		m.Flush()
	}
	if r != nil {
		r.reuse()
	}
}
