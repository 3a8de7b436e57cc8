package admin

import (
	"net/netip"
	"sync"
	"time"

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
	cm := &connMeter{m: m.m, labels: m.backend(c.Backend.Key()).labels, flushed: time.Now(), open: &m.open}
	m.open.Store(cm, struct{}{})
	m.m.IncrCounterWithLabels(keyBRouted, 1, cm.labels)
	m.m.IncrCounter(keyRouted, 1)
	return cm
}

// Closed implements listener.Observer: records the connection's lifetime.
func (m *Metrics) Closed(c *listener.ConnInfo, _ listener.Traffic) {
	m.duration(m.backend(c.Backend.Key()), c.Start)
	m.m.MeasureSince(keyDuration, c.Start)
}

// connMeter counts one connection's bytes; the data path calls it once per step (a small
// message, or a splice chunk) from each direction's goroutine. A go-metrics update costs more
// than moving a small message, so the bytes are batched and handed on once 256 KiB have
// gathered or a second has passed, before every scrape of /metrics, and at the end.
type connMeter struct {
	m      *gometrics.Metrics
	labels []gometrics.Label

	open *sync.Map // the Metrics' set of open meters; Flush at the end leaves it

	mu      sync.Mutex // guards the fields below; both directions report
	in, out int64      // bytes heard and not yet handed on
	flushed time.Time
}

const (
	meterBatch = 256 << 10
	meterEvery = time.Second
)

// Moved implements listener.Meter.
func (cm *connMeter) Moved(up bool, n int64) {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	if up {
		cm.in += n
	} else {
		cm.out += n
	}
	if cm.in+cm.out >= meterBatch {
		cm.flush(time.Now())
	} else if now := time.Now(); now.Sub(cm.flushed) >= meterEvery {
		cm.flush(now)
	}
}

// Flush implements listener.Meter: the connection has ended.
func (cm *connMeter) Flush() {
	cm.open.Delete(cm)
	cm.flushPending()
}

// flushPending hands on what has gathered.
func (cm *connMeter) flushPending() {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	cm.flush(time.Now())
}

// flush hands the gathered bytes to go-metrics; cm.mu is held. A float32 holds every count
// up to 16 MiB exactly, and a batch stays far below that.
func (cm *connMeter) flush(now time.Time) {
	cm.flushed = now
	if cm.in > 0 {
		cm.m.IncrCounterWithLabels(keyBBytesIn, float32(cm.in), cm.labels)
		cm.m.IncrCounter(keyBytesIn, float32(cm.in))
	}
	if cm.out > 0 {
		cm.m.IncrCounterWithLabels(keyBBytesOut, float32(cm.out), cm.labels)
		cm.m.IncrCounter(keyBytesOut, float32(cm.out))
	}
	cm.in, cm.out = 0, 0
}
