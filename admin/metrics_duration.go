package admin

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fulcrumlb/fulcrum/internal/histogram"
	"github.com/fulcrumlb/fulcrum/listener"
)

// durationBounds are the upper bounds of the total's and each service's connection-duration
// histogram, from half a millisecond (a short request on a LAN) to an hour (a long-lived
// session), in 1-2.5-5 steps for the quantiles a dashboard reads. Every balancer uses the same
// bounds, so that its series sum with the others'.
var durationBounds = histogram.NewBounds(
	500*time.Microsecond, time.Millisecond, 2500*time.Microsecond, 5*time.Millisecond,
	10*time.Millisecond, 25*time.Millisecond, 50*time.Millisecond, 100*time.Millisecond,
	250*time.Millisecond, 500*time.Millisecond, time.Second, 2500*time.Millisecond,
	5*time.Second, 10*time.Second, 30*time.Second, time.Minute, 5*time.Minute,
	30*time.Minute, time.Hour)

// backendDurationBounds are the bounds of each backend's histogram: coarser, a subset of
// durationBounds, because a balancer may have tens of thousands of backends and every bucket is
// a line of each one's exposition (11 lines a backend instead of 22). They tell a slow backend
// from its peers; quantiles are read from the service's histogram.
var backendDurationBounds = histogram.NewBounds(
	time.Millisecond, 10*time.Millisecond, 100*time.Millisecond, time.Second,
	10*time.Second, time.Minute, 5*time.Minute, time.Hour)

// durationCollector exposes connection lifetimes, accept to close, as Prometheus histograms:
//
//	fulcrum_connection_duration_seconds                              every service's, summed at scrape
//	fulcrum_service_connection_duration_seconds{service}             one per service, 0 from the start
//	fulcrum_backend_connection_duration_seconds{service,backend}     from its first closed connection
//
// The backends' family is written by the scrape itself (scrape.durations, metrics_stream.go),
// not by this collector: there may be tens of thousands.
// A connection's end adds to its backend's histogram and its service's (histogram.Observe:
// atomic adds, no lock, no allocation); the total is the services' sum, so no counter is
// shared by every connection of every service. A service's histogram is shared by its
// connections on every loop and is not sharded: two cores observing nothing else into one
// histogram take 35–75 ns an observation against 14 ns for one core (BenchmarkObserve in
// internal/histogram), a fraction of a percent of a connection's cost, and a connection gives
// no loop or CPU number to shard by. A backend's series is shown while its
// service's registry knows the backend, as its active gauge is: a forgotten backend's series
// disappears at the next scrape (its counts stay in its service's and the total).
type durationCollector struct {
	m              *Metrics
	total, service *prometheus.Desc
}

var _ prometheus.Collector = durationCollector{}

// durationHelp starts the help text of every connection-duration family.
const durationHelp = "Proxied connection lifetimes, accept to close, in seconds"

func newDurationCollector(m *Metrics) durationCollector {
	return durationCollector{
		m:       m,
		total:   prometheus.NewDesc("fulcrum_connection_duration_seconds", durationHelp+".", nil, nil),
		service: prometheus.NewDesc("fulcrum_service_connection_duration_seconds", durationHelp+", of the service's backends.", []string{"service"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c durationCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.total
	ch <- c.service
}

// Collect implements prometheus.Collector.
func (c durationCollector) Collect(ch chan<- prometheus.Metric) {
	var total, one histogram.Snapshot
	c.m.svcs.Range(func(k, v any) bool {
		v.(*serviceSeries).dur.Snapshot(&one)
		ch <- constHistogram(c.service, durationBounds, &one, k.(string))
		total.Merge(&one)
		return true
	})
	ch <- constHistogram(c.total, durationBounds, &total)
}

// constHistogram is a snapshot as a Prometheus histogram: cumulative buckets by upper bound
// in seconds (+Inf is the count), the sum in seconds.
func constHistogram(d *prometheus.Desc, b *histogram.Bounds, s *histogram.Snapshot, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, b.Len())
	for i := range b.Len() {
		buckets[b.Seconds(i)] = s.Cumulative(i)
	}
	return prometheus.MustNewConstHistogram(d, s.Count, s.Sum.Seconds(), buckets, labels...)
}

// knownBackends reports whether a backend's series are to be shown: its service's registry
// listed it at the last refresh of the gauges (each scrape refreshes them first), or its
// service has no registry to ask.
func (m *Metrics) knownBackends() func(seriesKey) bool {
	m.mu.Lock()
	listed := m.gauged // replaced whole at each refresh, never written after: safe to read unlocked
	m.mu.Unlock()
	return func(k seriesKey) bool { return listed[k] || !m.registered[k.service] }
}

// closed records a connection's lifetime on its backend's histogram and its service's.
func (m *Metrics) closed(service string, c *listener.ConnInfo) {
	d := time.Since(c.Start)
	if c.Backend != nil {
		if bs, ok := m.backends.load(seriesKey{service, c.Backend.Key()}); ok {
			bs.dur.Observe(d)
			bs.svc.dur.Observe(d)
			return
		}
	}
	m.serviceSeries(service).dur.Observe(d)
}

// serviceSeries returns a service's series, creating them on first sight.
func (m *Metrics) serviceSeries(service string) *serviceSeries {
	if ss, ok := m.svcs.Load(service); ok {
		return ss.(*serviceSeries)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.serviceLocked(service)
}
