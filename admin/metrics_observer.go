package admin

import (
	"net/netip"

	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// Metrics hears the data path's events as a listener.Observer: set it, or for a Server of one
// of several services ForService(name), as (or among) the listener.Server's Observer.
var (
	_ listener.QuickCloser = (*Metrics)(nil)
	_ listener.QuickCloser = serviceObserver{}
)

// QuickClose implements listener.QuickCloser: Closed adds to lock-free histograms (a backend's
// series are found without a lock; a service's first connection creates its series once) and
// the Meter's Flush does nothing, so the event loops call them as a connection ends.
func (m *Metrics) QuickClose() {}

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

// Closed implements listener.Observer: records the connection's lifetime on its service
// (ConnInfo.Service; "" means "default") and backend.
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
func (serviceObserver) QuickClose() {}

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
	bs.dialFailed.Add(1)
	m.m.IncrCounterWithLabels(keySDialFailed, 1, bs.svc.labels)
	m.m.IncrCounter(keyDialFailed, 1)
}

// opened counts a routed connection on its backend, whose series are the connection's Meter:
// nothing is allocated per connection.
func (m *Metrics) opened(service string, c *listener.ConnInfo) listener.Meter {
	bs := m.backend(service, c.Backend.Key())
	bs.traffic.routed.Add(1)
	return bs
}
