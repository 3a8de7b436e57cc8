package admin

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// serviceTraffic is what every connection adds to its service's series: routed connections
// and bytes each way. They are plain atomic counters read when /metrics is scraped, so that a
// connection pays an atomic add for its service's series and not a go-metrics update (a few
// allocations each, on the path of every connection and every batch of bytes).
type serviceTraffic struct {
	routed, bytesIn, bytesOut atomic.Uint64
}

// trafficCollector exposes every service's serviceTraffic as Prometheus counters.
type trafficCollector struct {
	svcs                      *sync.Map // service name → *serviceSeries: the Metrics' own
	routed, bytesIn, bytesOut *prometheus.Desc
}

var _ prometheus.Collector = trafficCollector{}

func newTrafficCollector(svcs *sync.Map) trafficCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"service"}, nil)
	}
	return trafficCollector{
		svcs:     svcs,
		routed:   desc("fulcrum_service_connections_routed_total", "Connections of the service proxied to a backend (dial succeeded)."),
		bytesIn:  desc("fulcrum_service_bytes_in_total", "Bytes carried client to the service's backends."),
		bytesOut: desc("fulcrum_service_bytes_out_total", "Bytes carried the service's backends to client."),
	}
}

// Describe implements prometheus.Collector.
func (c trafficCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.routed
	ch <- c.bytesIn
	ch <- c.bytesOut
}

// Collect implements prometheus.Collector: one series of each family per service seen.
func (c trafficCollector) Collect(ch chan<- prometheus.Metric) {
	c.svcs.Range(func(k, v any) bool {
		name, t := k.(string), &v.(*serviceSeries).traffic
		ch <- prometheus.MustNewConstMetric(c.routed, prometheus.CounterValue, float64(t.routed.Load()), name)
		ch <- prometheus.MustNewConstMetric(c.bytesIn, prometheus.CounterValue, float64(t.bytesIn.Load()), name)
		ch <- prometheus.MustNewConstMetric(c.bytesOut, prometheus.CounterValue, float64(t.bytesOut.Load()), name)
		return true
	})
}
