package admin

import (
	"net/netip"

	gometrics "github.com/hashicorp/go-metrics"

	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// Metrics hears the data path's events as a listener.Observer: set it as (or among) the
// listener.Server's Observer.
var _ listener.Observer = (*Metrics)(nil)

// Rejected implements listener.Observer: counts fulcrum_connections_rejected_total{reason}.
func (m *Metrics) Rejected(_ netip.AddrPort, err error) {
	m.rejected(err)
}

// DialFailed implements listener.Observer.
func (m *Metrics) DialFailed(b *pool.Backend, _ error) {
	m.m.IncrCounterWithLabels(keyBDialFailed, 1, m.backend(b.Key()).labels)
	m.m.IncrCounter(keyDialFailed, 1)
}

// Opened implements listener.Observer: counts the routed connection and returns the Meter
// that counts its bytes chunk by chunk, in total and on its backend's series.
func (m *Metrics) Opened(c *listener.ConnInfo) listener.Meter {
	cm := &connMeter{m: m.m, labels: m.backend(c.Backend.Key()).labels}
	m.m.IncrCounterWithLabels(keyBRouted, 1, cm.labels)
	m.m.IncrCounter(keyRouted, 1)
	return cm
}

// Closed implements listener.Observer: records the connection's lifetime.
func (m *Metrics) Closed(c *listener.ConnInfo, _ listener.Traffic) {
	m.duration(m.backend(c.Backend.Key()), c.Start)
	m.m.MeasureSince(keyDuration, c.Start)
}

// connMeter counts one connection's bytes; the data path calls it once per chunk from each
// direction's goroutine. The go-metrics calls are safe for concurrent use.
type connMeter struct {
	m      *gometrics.Metrics
	labels []gometrics.Label
}

// Moved implements listener.Meter. A float32 holds every chunk size up to 16 MiB exactly.
func (cm *connMeter) Moved(up bool, n int64) {
	total, backend := keyBytesOut, keyBBytesOut
	if up {
		total, backend = keyBytesIn, keyBBytesIn
	}
	cm.m.IncrCounterWithLabels(backend, float32(n), cm.labels)
	cm.m.IncrCounter(total, float32(n))
}
