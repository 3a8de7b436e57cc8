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
// and the heartbeats of each service and in total, as the sums of their backends' taken here:
//
//	fulcrum_service_heartbeats_total{service}   0 from the start for a configured service
//	fulcrum_heartbeats_total
//
// They were go-metrics series, one label set and one client_golang series per family and
// backend (about 4 KB a backend), and a heartbeat made three allocating go-metrics updates
// (several microseconds, a fifth of a heartbeat's CPU with 50,000 backends); they are now
// atomic fields of the backend's series. Dial failures of a service and in total stay
// go-metrics counters. Like the traffic counters, these series stay until the process ends,
// so the sums never go down. The backends' families are written by the scrape itself
// (metrics_stream.go); this collector gives the sums.
type counterCollector struct {
	svcs                         *sync.Map  // service name → *serviceSeries: the Metrics' own
	backends                     *seriesMap // the Metrics' own
	svcHeartbeat, totalHeartbeat *prometheus.Desc
}

var _ prometheus.Collector = counterCollector{}

func newCounterCollector(svcs *sync.Map, backends *seriesMap) counterCollector {
	return counterCollector{
		svcs: svcs, backends: backends,
		svcHeartbeat:   prometheus.NewDesc("fulcrum_service_heartbeats_total", "Admin add calls for the service's backends already registered.", []string{"service"}, nil),
		totalHeartbeat: prometheus.NewDesc("fulcrum_heartbeats_total", "Admin add calls for backends already registered.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c counterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.svcHeartbeat
	ch <- c.totalHeartbeat
}

// Collect implements prometheus.Collector.
func (c counterCollector) Collect(ch chan<- prometheus.Metric) {
	heartbeats := map[string]uint64{}
	c.svcs.Range(func(k, _ any) bool {
		heartbeats[k.(string)] = 0
		return true
	})
	var total uint64
	c.backends.each(func(key seriesKey, bs *backendSeries) bool {
		hb := bs.heartbeats.Load()
		heartbeats[key.service] += hb
		total += hb
		return true
	})
	for name, n := range heartbeats {
		ch <- prometheus.MustNewConstMetric(c.svcHeartbeat, prometheus.CounterValue, float64(n), name)
	}
	ch <- prometheus.MustNewConstMetric(c.totalHeartbeat, prometheus.CounterValue, float64(total))
}
