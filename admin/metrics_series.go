package admin

import (
	"sync/atomic"

	gometrics "github.com/hashicorp/go-metrics"

	"github.com/fulcrumlb/fulcrum/internal/histogram"
	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// seriesKey names a backend's series (a service and a backend key), or a service's rejection
// series (a service and a reason label).
type seriesKey struct {
	service, name string
}

// serviceSeries is one service's label set and its connection-duration histogram.
type serviceSeries struct {
	labels []gometrics.Label // service=NAME
	dur    *histogram.Histogram
}

func newServiceSeries(service string) *serviceSeries {
	return &serviceSeries{labels: serviceLabels(service), dur: histogram.New(durationBounds)}
}

// backendSeries is everything one backend's series count: its service's series, what its
// connections add to (traffic and lifetimes), its dial failures and heartbeats, and its active
// connections as the registry gave them at the last scrape. All of it is allocated here, when
// the backend is first seen, and read by collectors at scrape (metrics_counters.go): an event
// costs an atomic add, not a go-metrics update, and a backend costs a few hundred bytes, not
// a go-metrics series with its label set per family. It is the Meter of its connections.
type backendSeries struct {
	svc                    *serviceSeries
	traffic                traffic
	dialFailed, heartbeats atomic.Uint64
	active                 atomic.Int64 // set at each scrape (refreshGauges)
	dur                    *histogram.Histogram
}

var _ listener.Meter = (*backendSeries)(nil)

// Moved implements listener.Meter: one atomic add per chunk.
func (bs *backendSeries) Moved(up bool, n int64) { bs.traffic.add(up, uint64(n)) }

// Flush implements listener.Meter; nothing is batched, and the lifetime is recorded by
// Observer.Closed, which comes just before.
func (bs *backendSeries) Flush() {}

// The sink tells series apart by their labels in the order given, so each label set is built
// in one place.
func serviceLabels(service string) []gometrics.Label {
	return []gometrics.Label{{Name: "service", Value: service}}
}

func serviceReasonLabels(service, reason string) []gometrics.Label {
	return []gometrics.Label{{Name: "service", Value: service}, {Name: "reason", Value: reason}}
}

func serviceOrDefault(service string) string {
	if service == "" {
		return pool.DefaultService
	}
	return service
}

// backend returns the series of a service's backend, creating them at 0 on first sight.
func (m *Metrics) backend(service, key string) *backendSeries {
	if bs, ok := m.backends.load(seriesKey{service, key}); ok {
		return bs
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.backendLocked(seriesKey{service, key})
}

// backendLocked is backend for a caller that holds m.mu.
func (m *Metrics) backendLocked(k seriesKey) *backendSeries {
	if bs, ok := m.backends.load(k); ok {
		return bs
	}
	bs := &backendSeries{svc: m.serviceLocked(k.service), dur: histogram.New(backendDurationBounds)}
	m.backends.store(k, bs)
	return bs
}

// serviceLocked returns a service's series; m.mu is held. A configured service's were
// declared up front; one the Metrics was not told of has its counters created at 0 here.
func (m *Metrics) serviceLocked(service string) *serviceSeries {
	if ss, ok := m.svcs.Load(service); ok {
		return ss.(*serviceSeries)
	}
	ss := newServiceSeries(service)
	for _, key := range [][]string{keySDialFailed} {
		m.m.IncrCounterWithLabels(key, 0, ss.labels)
	}
	m.svcs.Store(service, ss)
	return ss
}

// reasonLabel is the reason label of a rejection's text: one of the known reasons, otherwise
// the text itself; at most maxReasons label values, later new texts as "other". The total's
// series of a new label is created, at 0, before the label is handed out. A text seen before
// costs no lock.
func (m *Metrics) reasonLabel(text string) string {
	if label, ok := m.reasons.Load(text); ok {
		return label.(string)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if label, ok := m.reasons.Load(text); ok {
		return label.(string)
	}
	label := text
	if m.nReason >= maxReasons {
		label = "other"
	} else {
		m.nReason++
	}
	m.m.IncrCounterWithLabels(keyRejected, 0, []gometrics.Label{{Name: "reason", Value: label}})
	m.reasons.Store(text, label)
	return label
}

// serviceReason returns the labels of a service's rejection series for a reason label,
// creating the series at 0 on first use.
func (m *Metrics) serviceReason(service, label string) []gometrics.Label {
	k := seriesKey{service, label}
	if labels, ok := m.svcReasons.Load(k); ok {
		return labels.([]gometrics.Label)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if labels, ok := m.svcReasons.Load(k); ok {
		return labels.([]gometrics.Label)
	}
	labels := serviceReasonLabels(service, label)
	m.m.IncrCounterWithLabels(keySRejected, 0, labels)
	m.svcReasons.Store(k, labels)
	return labels
}
