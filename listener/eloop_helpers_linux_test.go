//go:build linux

package listener

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ls.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ls.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
		assertPickerIdle(t, cfg.Picker)
		if n := ls.book.stats.ReleaseBugs.Load(); n != 0 {
			t.Errorf("%d release bugs", n)
		}
	})
	return ls, ln.Addr().String()
}

// newLoopServer puts s on the loops el, as Server.init does for PlaneEpoll.
func newLoopServer(el *EventLoops, s *Server, own bool) *loopServer {
	s.DataPlane = PlaneEpoll
	pl, _ := el.server(s, newConnBook(s), own)
	return pl.(*loopServer)
}

func assertPickerIdle(t *testing.T, p pool.Picker) {
	t.Helper()
	if pl, ok := p.(*pool.Pool); ok {
		for _, st := range pl.Snapshot() {
			if st.Active != 0 {
				t.Errorf("%s: %d connections counted after shutdown", st.Key, st.Active)
			}
		}
	}
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
