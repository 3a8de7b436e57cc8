//go:build linux

package listener

import (
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/fulcrumlb/fulcrum/pool"
)

// closeCounter counts Closed calls; quickCloseCounter is the same declared a QuickCloser.
type closeCounter struct{ n *atomic.Int64 }

func (closeCounter) Rejected(netip.AddrPort, error)  {}
func (closeCounter) DialFailed(*pool.Backend, error) {}
func (closeCounter) Opened(*ConnInfo) Meter          { return nil }
func (o closeCounter) Closed(*ConnInfo, Traffic)     { o.n.Add(1) }

type quickCloseCounter struct{ closeCounter }

func (quickCloseCounter) QuickClose() {}

// TestLoopQuickClosersSkipTheNotifier: when every observer is a QuickCloser (fulcrum's
// defaults: the byte totals and metrics), a connection's end is told on its loop and queues
// nothing for the notifier's goroutine; one observer that is not sends every end through it.
func TestLoopQuickClosersSkipTheNotifier(t *testing.T) {
	const conns = 20
	for _, tc := range []struct {
		name   string
		quick  bool
		queued uint64
	}{{"quick", true, 0}, {"not quick", false, conns}} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int64
			var o Observer = closeCounter{&n}
			if tc.quick {
				o = quickCloseCounter{closeCounter{&n}}
			}
			p := resPool(t, resBackend(t, resEcho))
			ls, addr := startLoops(t, 1, &Server{Picker: p, Observer: Observers{BackendBytes{}, o}})
			for i := range conns {
				if err := echoOnce(addr, 1+i); err != nil {
					t.Fatal(err)
				}
			}
			resEventually(t, "every connection's Closed", func() bool { return n.Load() == conns })
			if got := ls.el.notes.nClosed.Load(); got != tc.queued {
				t.Errorf("%d ends queued for the notifier, want %d", got, tc.queued)
			}
		})
	}
}
