//go:build linux

package listener

import (
	"os"
	"strings"
	"testing"
	"time"
)

// startLoops serves cfg on n event loops of its own, on a loopback port, until the test ends;
// cleanup shuts them down and checks that every backend count is back to 0 and no release was
// refused.
func startLoops(t *testing.T, n int, cfg *Server) (*loopServer, string) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	ls := newLoopServer(NewEventLoops(n), cfg, true)
	return ls, serveLoopback(t, ls, cfg.Picker, ls.book.stats)
}

// newLoopServer puts s on the loops el, as Server.init does for PlaneEpoll.
func newLoopServer(el *EventLoops, s *Server, own bool) *loopServer {
	s.DataPlane = PlaneEpoll
	pl, _ := el.server(s, newConnBook(s), own)
	return pl.(*loopServer)
}

// fdSet lists this process's open descriptors: number → what it refers to.
func fdSet(t *testing.T) map[string]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	m := make(map[string]string, len(ents))
	for _, en := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + en.Name()); err == nil {
			m[en.Name()] = target
		}
	}
	return m
}

// newFDs lists the descriptors open now that were not open at start (ReadDir's own aside).
// Descriptors that closed meanwhile do not count: an earlier test's pipes may be collected.
func newFDs(t *testing.T, start map[string]string) []string {
	t.Helper()
	var out []string
	for fd, target := range fdSet(t) {
		if start[fd] != target && !strings.HasPrefix(target, "/proc/") {
			out = append(out, fd+" "+target)
		}
	}
	return out
}

// panicMeter panics when it hears a chunk of exactly panicSize bytes.
type panicMeter struct{}

const panicSize = 13

func (panicMeter) Moved(_ bool, n int64) {
	if n == panicSize {
		panic("meter bug")
	}
}

func (panicMeter) Flush() {}

type panicObserver struct{ resObserver }

func (panicObserver) Opened(*ConnInfo) Meter { return panicMeter{} }
