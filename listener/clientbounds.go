package listener

import (
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/fulcrumlb/fulcrum/listener/clientlimit"
)

// Per-client bounds (Server.Clients): a new connection is admitted or refused by its client's
// address after the PROXY header and SNI routing (which may name the real client or the
// service) and before any backend is picked or dialed; an admitted one releases its claim
// exactly once, where the plane ends it (conn.end, loop.finish). Both planes call these
// connBook methods, so the counting and the log line are written once.

// ClientObserver hears the connections a Server's per-client bounds refused. Its method must
// not block: the event loops call it.
type ClientObserver interface {
	// ClientRefused: a connection to service was closed at accept; reason is "conns",
	// "rate" or "acl".
	ClientRefused(service, reason string)
}

// errClientRefused ends a connection the per-client bounds refused: it is counted by the
// ClientObserver, not as a rejection.
var errClientRefused = errors.New("refused by per-client bounds")

// admit asks the per-client bounds about a new connection from client. The error is
// errClientRefused when they refuse it, already counted and logged.
func (bk *connBook) admit(client netip.Addr, now time.Time) (clientlimit.Ticket, error) {
	if bk.clients == nil {
		return clientlimit.Ticket{}, nil
	}
	tk, reason := bk.clients.Admit(client, now)
	if reason == "" {
		return tk, nil
	}
	if bk.clientObs != nil {
		bk.clientObs.ClientRefused(bk.service, reason)
	}
	bk.logClient.Do(func() {
		bk.log(slog.LevelWarn, "refusing client: per-client bound", "client", client, "reason", reason)
	})
	return clientlimit.Ticket{}, errClientRefused
}

// releaseClient gives back an admitted connection's claim, once it has ended.
func (bk *connBook) releaseClient(tk clientlimit.Ticket) {
	if bk.clients == nil {
		return
	}
	if err := bk.clients.Release(tk); err != nil {
		bk.stats.ReleaseBugs.Add(1)
		bk.log(slog.LevelError, "per-client count out of step", "err", err)
	}
}
