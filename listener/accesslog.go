package listener

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// AccessLog is an Observer that writes one JSON line per finished client connection:
//
//	{"time":"…","level":"INFO","msg":"conn","service":"default","client":"203.0.113.7:51234","local":"10.0.0.1:8000",
//	 "backend":"10.0.0.5:8080","duration":0.0123,"bytes_up":517,"bytes_down":10240,"end":"eof"}
//
// duration is in seconds; bytes_up is client → backend, bytes_down backend → client; end says how
// the connection ended: "eof" (both sides closed cleanly), "reset", "timeout" (Splice.IdleTimeout
// included), "closed" (closed by fulcrum, such as at the end of a drain), or "error: …". A client closed before reaching a
// backend gets a line too, with no backend and end "rejected: …". When a trusted PROXY header
// named the client, "peer" is the balancer in front that sent it.
//
// It does no I/O of its own beyond the writer; a nil *AccessLog or one with a nil writer logs
// nothing.
type AccessLog struct {
	log     *slog.Logger
	service string // names the service of Rejected lines, which carry no ConnInfo; "" is "default"
}

var _ Observer = (*AccessLog)(nil)

// NewAccessLog writes access lines to w, which must be safe for concurrent writes of whole lines
// (an *os.File is: slog writes each line with one Write).
func NewAccessLog(w io.Writer) *AccessLog {
	return &AccessLog{log: slog.New(slog.NewJSONHandler(w, nil))}
}

// Rejected implements Observer: the client never reached a backend.
func (a *AccessLog) Rejected(client netip.AddrPort, err error) {
	if a == nil || a.log == nil {
		return
	}
	a.log.LogAttrs(context.Background(), slog.LevelInfo, "conn", slog.String("service", a.serviceOf("")),
		slog.String("client", client.String()),
		slog.String("end", "rejected: "+err.Error()))
}

// DialFailed implements Observer; a failed dial is not the end of a connection, so it has no line.
func (a *AccessLog) DialFailed(*pool.Backend, error) {}

// Opened implements Observer; the byte counts come with Closed, so no Meter is needed.
func (a *AccessLog) Opened(*ConnInfo) Meter { return nil }

// Closed implements Observer.
func (a *AccessLog) Closed(c *ConnInfo, t Traffic) {
	if a == nil || a.log == nil {
		return
	}
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs, slog.String("service", a.serviceOf(c.Service)), slog.String("client", c.Client.String()), slog.String("local", c.Local.String()))
	if c.Peer.IsValid() {
		attrs = append(attrs, slog.String("peer", c.Peer.String()))
	}
	if c.Backend != nil {
		attrs = append(attrs, slog.String("backend", c.Backend.Key()))
	}
	attrs = append(attrs,
		slog.Float64("duration", time.Since(c.Start).Seconds()),
		slog.Int64("bytes_up", t.Up),
		slog.Int64("bytes_down", t.Down),
		slog.String("end", EndReason(t.Err)),
		slog.String("sni", c.SNI))
	a.log.LogAttrs(context.Background(), slog.LevelInfo, "conn", attrs...)
}

// serviceOf names a line's service: the connection's, else the one ForService gave, else "default".
func (a *AccessLog) serviceOf(conn string) string {
	switch {
	case conn != "":
		return conn
	case a.service != "":
		return a.service
	}
	return pool.DefaultService
}

// EndReason names how a connection ended, from its Traffic.Err: "eof", "reset", "timeout",
// "closed" or "error: <err>".
func EndReason(err error) string {
	switch {
	case err == nil:
		return "eof"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, ErrIdle), errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		return "timeout"
	case errors.Is(err, net.ErrClosed):
		return "closed"
	}
	return "error: " + err.Error()
}
