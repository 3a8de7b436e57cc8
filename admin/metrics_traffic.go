package admin

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// traffic is what every connection adds to its backend's, its service's and the total series:
// routed connections and bytes each way. They are plain atomic counters read when /metrics is
// scraped, so a connection pays a few atomic adds and not go-metrics updates (a few
// allocations each, on the path of every connection and every chunk of bytes), and the
// numbers are exact at every scrape.
type traffic struct {
	routed, bytesIn, bytesOut atomic.Uint64
}

// add counts n bytes one way: up is client to backend.
func (t *traffic) add(up bool, n uint64) {
	if up {
		t.bytesIn.Add(n)
	} else {
		t.bytesOut.Add(n)
	}
}

// trafficDescs are the three families of one kind of series (total, service or backend).
type trafficDescs struct {
	routed, bytesIn, bytesOut *prometheus.Desc
}

func newTrafficDescs(prefix string, labels []string, help [3]string) trafficDescs {
	return trafficDescs{
		routed:   prometheus.NewDesc(prefix+"connections_routed_total", help[0], labels, nil),
		bytesIn:  prometheus.NewDesc(prefix+"bytes_in_total", help[1], labels, nil),
		bytesOut: prometheus.NewDesc(prefix+"bytes_out_total", help[2], labels, nil),
	}
}

func (d trafficDescs) describe(ch chan<- *prometheus.Desc) {
	ch <- d.routed
	ch <- d.bytesIn
	ch <- d.bytesOut
}

func (d trafficDescs) collect(ch chan<- prometheus.Metric, t *traffic, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d.routed, prometheus.CounterValue, float64(t.routed.Load()), labels...)
	ch <- prometheus.MustNewConstMetric(d.bytesIn, prometheus.CounterValue, float64(t.bytesIn.Load()), labels...)
	ch <- prometheus.MustNewConstMetric(d.bytesOut, prometheus.CounterValue, float64(t.bytesOut.Load()), labels...)
}

// trafficCollector exposes the total, every service's and every backend's traffic as
// Prometheus counters. A backend's series stay until the process ends.
type trafficCollector struct {
	total    *traffic
	svcs     *sync.Map // service name → *serviceSeries: the Metrics' own
	backends *sync.Map // seriesKey → *backendSeries: the Metrics' own

	totalD, serviceD, backendD trafficDescs
}

var _ prometheus.Collector = trafficCollector{}

func newTrafficCollector(total *traffic, svcs, backends *sync.Map) trafficCollector {
	return trafficCollector{
		total: total, svcs: svcs, backends: backends,
		totalD: newTrafficDescs("fulcrum_", nil, [3]string{
			"Connections proxied to a backend (dial succeeded).",
			"Bytes carried client to backend.",
			"Bytes carried backend to client."}),
		serviceD: newTrafficDescs("fulcrum_service_", []string{"service"}, [3]string{
			"Connections of the service proxied to a backend (dial succeeded).",
			"Bytes carried client to the service's backends.",
			"Bytes carried the service's backends to client."}),
		backendD: newTrafficDescs("fulcrum_backend_", []string{"service", "backend"}, [3]string{
			"Connections proxied to the backend (dial succeeded).",
			"Bytes carried client to the backend.",
			"Bytes carried the backend to client."}),
	}
}

// Describe implements prometheus.Collector.
func (c trafficCollector) Describe(ch chan<- *prometheus.Desc) {
	c.totalD.describe(ch)
	c.serviceD.describe(ch)
	c.backendD.describe(ch)
}

// Collect implements prometheus.Collector.
func (c trafficCollector) Collect(ch chan<- prometheus.Metric) {
	c.totalD.collect(ch, c.total)
	c.svcs.Range(func(k, v any) bool {
		c.serviceD.collect(ch, &v.(*serviceSeries).traffic, k.(string))
		return true
	})
	c.backends.Range(func(k, v any) bool {
		key := k.(seriesKey)
		c.backendD.collect(ch, &v.(*backendSeries).traffic, key.service, key.name)
		return true
	})
}
