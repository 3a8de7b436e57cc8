package listener

import (
	"net/netip"
	"testing"

	"github.com/fulcrumlb/fulcrum/pool"
)

// countMeter counts what it hears; its observer returns it from Opened.
type countMeter struct{ up, down, flushed int64 }

func (m *countMeter) Moved(up bool, n int64) {
	if up {
		m.up += n
	} else {
		m.down += n
	}
}
func (m *countMeter) Flush() { m.flushed++ }

type meterObserver struct{ m Meter }

func (meterObserver) Rejected(netip.AddrPort, error)  {}
func (meterObserver) DialFailed(*pool.Backend, error) {}
func (o meterObserver) Opened(*ConnInfo) Meter        { return o.m }
func (meterObserver) Closed(*ConnInfo, Traffic)       {}

// TestObserversFanOutMeters: every observer's meter hears every chunk and one Flush, however
// many there are (more than a meterSet's array included), whether the set is the caller's or
// allocated; with one meter it is returned itself, with none nil.
func TestObserversFanOutMeters(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 5} {
		for _, own := range []bool{false, true} {
			ms := make([]*countMeter, n)
			os := Observers{meterObserver{}} // one that returns no meter
			for i := range ms {
				ms[i] = new(countMeter)
				os = append(os, meterObserver{ms[i]}, meterObserver{})
			}
			var set *meterSet
			if own {
				set = new(meterSet)
			}
			m := os.open(&ConnInfo{}, set)
			switch {
			case n == 0 && m != nil:
				t.Fatalf("%d meters: got %v, want nil", n, m)
			case n == 1 && m != Meter(ms[0]):
				t.Fatalf("one meter: got %v, want it itself", m)
			case n >= 2 && own && m != Meter(set):
				t.Fatalf("%d meters: not the set given", n)
			case n == 0:
				continue
			}
			m.Moved(true, 3)
			m.Moved(false, 5)
			m.Flush()
			for i, c := range ms {
				if *c != (countMeter{up: 3, down: 5, flushed: 1}) {
					t.Errorf("%d meters (own set %v): meter %d heard %+v", n, own, i, *c)
				}
			}
		}
	}
}
