package admin

import (
	"net/netip"
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics"

	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// Metrics hears the data path's events as a listener.Observer: set it, or for a Server of one
// of several services ForService(name), as (or among) the listener.Server's Observer.
var (
	_ listener.Observer = (*Metrics)(nil)
	_ listener.Observer = serviceObserver{}
)

// Rejected implements listener.Observer: counts fulcrum_connections_rejected_total{reason}.
// The event names no service, so no service's series counts it (ForService's observer does).
func (m *Metrics) Rejected(_ netip.AddrPort, err error) {
	m.rejected("", err)
}

// DialFailed implements listener.Observer. The event names no service, so the failure is
// counted on the first service (in the order given to NewServiceMetrics) whose registry knows
// the backend's key, or on "default"; ForService's observer counts it on its own service.
func (m *Metrics) DialFailed(b *pool.Backend, _ error) {
	m.dialFailed(m.serviceOf(b.Key()), b)
}

// Opened implements listener.Observer: counts the routed connection on its service
// (ConnInfo.Service; "" means "default") and backend, and returns the Meter that counts its
// bytes chunk by chunk.
func (m *Metrics) Opened(c *listener.ConnInfo) listener.Meter {
	return m.opened(serviceOrDefault(c.Service), c)
}

// Closed implements listener.Observer: records the connection's lifetime.
func (m *Metrics) Closed(c *listener.ConnInfo, _ listener.Traffic) {
	m.closed(serviceOrDefault(c.Service), c)
}

// ForService returns an observer for the listener.Server of one service ("" means "default"):
// it counts every event on that service's series, rejections and dial failures included.
func (m *Metrics) ForService(service string) listener.Observer {
	return serviceObserver{m: m, service: serviceOrDefault(service)}
}

// serviceObserver is Metrics hearing the events of one service's Server.
type serviceObserver struct {
	m       *Metrics
	service string
}

func (o serviceObserver) Rejected(_ netip.AddrPort, err error)       { o.m.rejected(o.service, err) }
func (o serviceObserver) DialFailed(b *pool.Backend, _ error)        { o.m.dialFailed(o.service, b) }
func (o serviceObserver) Opened(c *listener.ConnInfo) listener.Meter { return o.m.opened(o.service, c) }
func (o serviceObserver) Closed(c *listener.ConnInfo, _ listener.Traffic) {
	o.m.closed(o.service, c)
}

// serviceOf is the service a dial failure reported without one is counted on. With one
// service there is nothing to look up.
func (m *Metrics) serviceOf(key string) string {
	if len(m.services) == 1 {
		return m.services[0].Name
	}
	for _, s := range m.services {
		if s.Registry == nil {
			continue
		}
		if _, ok := s.Registry.Lookup(key); ok {
			return s.Name
		}
	}
	return pool.DefaultService
}

func (m *Metrics) dialFailed(service string, b *pool.Backend) {
	bs := m.backend(service, b.Key())
	m.m.IncrCounterWithLabels(keyBDialFailed, 1, bs.labels)
	m.m.IncrCounterWithLabels(keySDialFailed, 1, bs.svc.labels)
	m.m.IncrCounter(keyDialFailed, 1)
}

func (m *Metrics) opened(service string, c *listener.ConnInfo) listener.Meter {
	bs := m.backend(service, c.Backend.Key())
	cm := &connMeter{m: m.m, series: bs, flushed: time.Now(), open: &m.open}
	m.open.Store(cm, struct{}{})
	m.m.IncrCounterWithLabels(keyBRouted, 1, bs.labels)
	bs.svc.traffic.routed.Add(1)
	m.m.IncrCounter(keyRouted, 1)
	return cm
}

func (m *Metrics) closed(service string, c *listener.ConnInfo) {
	m.duration(m.backend(service, c.Backend.Key()), c.Start)
	m.m.MeasureSince(keyDuration, c.Start)
}

// connMeter counts one connection's bytes; the data path calls it once per step (a small
// message, or a splice chunk) from each direction's goroutine. A go-metrics update costs more
// than moving a small message, so the bytes are batched and handed on once 256 KiB have
// gathered or a second has passed, before every scrape of /metrics, and at the end.
type connMeter struct {
	m      *gometrics.Metrics
	series *backendSeries

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
		cm.m.IncrCounterWithLabels(keyBBytesIn, float32(cm.in), cm.series.labels)
		cm.series.svc.traffic.bytesIn.Add(uint64(cm.in))
		cm.m.IncrCounter(keyBytesIn, float32(cm.in))
	}
	if cm.out > 0 {
		cm.m.IncrCounterWithLabels(keyBBytesOut, float32(cm.out), cm.series.labels)
		cm.series.svc.traffic.bytesOut.Add(uint64(cm.out))
		cm.m.IncrCounter(keyBytesOut, float32(cm.out))
	}
	cm.in, cm.out = 0, 0
}
