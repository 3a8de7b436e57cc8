package admin

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// counterCollector exposes what each backend's series count besides traffic and lifetimes:
//
//	fulcrum_backend_connections_active{service,backend}   from the registry at this scrape; 0 once forgotten
//	fulcrum_backend_dial_failures_total{service,backend}  failed dials, retries included
//	fulcrum_backend_heartbeats_total{service,backend}     admin add calls for it while registered
//
// They were go-metrics series, one label set and one client_golang series per family and
// backend (about 4 KB a backend, and an allocating update per heartbeat); they are now atomic
// fields of the backend's series. Their totals and per-service sums stay go-metrics counters.
// Like the traffic counters, they stay until the process ends.
type counterCollector struct {
	backends                      *sync.Map // seriesKey → *backendSeries: the Metrics' own
	active, dialFailed, heartbeat *prometheus.Desc
}

var _ prometheus.Collector = counterCollector{}

func newCounterCollector(backends *sync.Map) counterCollector {
	labels := []string{"service", "backend"}
	return counterCollector{
		backends:   backends,
		active:     prometheus.NewDesc("fulcrum_backend_connections_active", "Connections counted on the backend now (dialing or proxying).", labels, nil),
		dialFailed: prometheus.NewDesc("fulcrum_backend_dial_failures_total", "Failed dials to the backend, retries included.", labels, nil),
		heartbeat:  prometheus.NewDesc("fulcrum_backend_heartbeats_total", "Admin add calls for the backend while it was registered.", labels, nil),
	}
}

// Describe implements prometheus.Collector.
func (c counterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.active
	ch <- c.dialFailed
	ch <- c.heartbeat
}

// Collect implements prometheus.Collector.
func (c counterCollector) Collect(ch chan<- prometheus.Metric) {
	c.backends.Range(func(k, v any) bool {
		key, bs := k.(seriesKey), v.(*backendSeries)
		ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(bs.active.Load()), key.service, key.name)
		ch <- prometheus.MustNewConstMetric(c.dialFailed, prometheus.CounterValue, float64(bs.dialFailed.Load()), key.service, key.name)
		ch <- prometheus.MustNewConstMetric(c.heartbeat, prometheus.CounterValue, float64(bs.heartbeats.Load()), key.service, key.name)
		return true
	})
}
