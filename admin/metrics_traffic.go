package admin

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// traffic is what every connection adds to its backend's series: routed connections and
// bytes each way. They are plain atomic counters read when /metrics is scraped, so a
// connection pays one atomic add per chunk and not a go-metrics update (a few allocations
// each), and the numbers are exact at every scrape. A service's and the total figures are the
// sums of their backends', taken at scrape: the hot path touches no counter that every
// connection shares. Backend series are never deleted, so the sums never go down.
//
// These are not pool.Backend's byte totals (status bytes_in, bytes_out): those start again
// when a backend is forgotten and registered anew, and a Prometheus counter must not.
type traffic struct {
	routed, bytesIn, bytesOut atomic.Uint64
}

// trafficSum is a sum of traffic taken at one scrape.
type trafficSum struct {
	routed, bytesIn, bytesOut uint64
}

func (t *trafficSum) add(from *traffic) {
	t.routed += from.routed.Load()
	t.bytesIn += from.bytesIn.Load()
	t.bytesOut += from.bytesOut.Load()
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

func (d trafficDescs) collect(ch chan<- prometheus.Metric, t trafficSum, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d.routed, prometheus.CounterValue, float64(t.routed), labels...)
	ch <- prometheus.MustNewConstMetric(d.bytesIn, prometheus.CounterValue, float64(t.bytesIn), labels...)
	ch <- prometheus.MustNewConstMetric(d.bytesOut, prometheus.CounterValue, float64(t.bytesOut), labels...)
}

// trafficCollector exposes the total's and every service's traffic as Prometheus counters,
// the sums of their backends'. The backends' own families (fulcrum_backend_connections_routed_total,
// fulcrum_backend_bytes_in_total, fulcrum_backend_bytes_out_total) are written by the scrape
// itself (metrics_stream.go); a backend's series stay until the process ends.
type trafficCollector struct {
	svcs     *sync.Map  // service name → *serviceSeries: the Metrics' own
	backends *seriesMap // the Metrics' own

	totalD, serviceD trafficDescs
}

var _ prometheus.Collector = trafficCollector{}

func newTrafficCollector(svcs *sync.Map, backends *seriesMap) trafficCollector {
	return trafficCollector{
		svcs: svcs, backends: backends,
		totalD: newTrafficDescs("fulcrum_", nil, [3]string{
			"Connections proxied to a backend (dial succeeded).",
			"Bytes carried client to backend.",
			"Bytes carried backend to client."}),
		serviceD: newTrafficDescs("fulcrum_service_", []string{"service"}, [3]string{
			"Connections of the service proxied to a backend (dial succeeded).",
			"Bytes carried client to the service's backends.",
			"Bytes carried the service's backends to client."}),
	}
}

// Describe implements prometheus.Collector.
func (c trafficCollector) Describe(ch chan<- *prometheus.Desc) {
	c.totalD.describe(ch)
	c.serviceD.describe(ch)
}

// Collect implements prometheus.Collector: every service's series and the total, as the sums
// of their backends' (a service with no backend yet at 0).
func (c trafficCollector) Collect(ch chan<- prometheus.Metric) {
	var total trafficSum
	services := map[string]*trafficSum{}
	c.svcs.Range(func(k, _ any) bool {
		services[k.(string)] = new(trafficSum)
		return true
	})
	c.backends.each(func(key seriesKey, bs *backendSeries) bool {
		t := &bs.traffic
		if services[key.service] == nil {
			services[key.service] = new(trafficSum)
		}
		services[key.service].add(t)
		total.add(t)
		return true
	})
	for name, sum := range services {
		c.serviceD.collect(ch, *sum, name)
	}
	c.totalD.collect(ch, total)
}
