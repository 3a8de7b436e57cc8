package admin

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fulcrumlb/fulcrum/internal/buildinfo"
	"github.com/fulcrumlb/fulcrum/pool"
)

// backendCollector exposes, from the snapshot of each service's registry that the scrape took
// (Metrics.ServeHTTP, the same that sets the active-connection gauges), what alerting asks of
// a backend:
//
//	fulcrum_backend_up{service,backend}                   1 when picking may choose it (state up or static), else 0
//	fulcrum_backend_state{service,backend,state}          one series per state, 1 for the current one
//	fulcrum_health_checks_failed_total{service,backend}   active health checks failed
//
// The states are those /upstream/status reports (pool.States). These series exist only while
// the registry knows the backend: a forgotten backend's disappear at the next scrape, and its
// failed-check count starts again at 0 if it is registered anew (a counter reset, which
// Prometheus' rate() expects).
type backendCollector struct {
	services []Service
	scraped  *atomic.Pointer[[][]pool.Status] // the snapshot, in the order of services
	up       *prometheus.Desc
	state    *prometheus.Desc
	failed   *prometheus.Desc
}

var _ prometheus.Collector = backendCollector{}

func newBackendCollector(services []Service, scraped *atomic.Pointer[[][]pool.Status]) backendCollector {
	labels := []string{"service", "backend"}
	return backendCollector{
		services: services,
		scraped:  scraped,
		up:       prometheus.NewDesc("fulcrum_backend_up", "1 when picking may choose the backend (state up or static), else 0.", labels, nil),
		state: prometheus.NewDesc("fulcrum_backend_state", "The backend's state, as /upstream/status reports it: 1 for the current one, 0 for the others.",
			append(labels, "state"), nil),
		failed: prometheus.NewDesc("fulcrum_health_checks_failed_total", "Active health checks of the backend that failed.", labels, nil),
	}
}

// Describe implements prometheus.Collector.
func (c backendCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.state
	ch <- c.failed
}

// Collect implements prometheus.Collector.
func (c backendCollector) Collect(ch chan<- prometheus.Metric) {
	snaps := c.scraped.Load()
	if snaps == nil {
		return // no scrape through Metrics.ServeHTTP yet
	}
	states := pool.States()
	for i, svc := range c.services {
		for _, s := range (*snaps)[i] {
			ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, one(s.State.Pickable()), svc.Name, s.Key)
			for _, st := range states {
				ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, one(s.State == st), svc.Name, s.Key, string(st))
			}
			ch <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(s.ChecksFailed), svc.Name, s.Key)
		}
	}
}

func one(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// newBuildInfoGauge is fulcrum_build_info{version,revision,goversion} = 1: which build serves,
// so that a dashboard shows an upgrade land (buildinfo.Read). The revision is as status
// reports it: "unknown" when not recorded, "-modified" after it for a changed work tree.
func newBuildInfoGauge(info buildinfo.Info) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "fulcrum_build_info",
		Help: "The running build: module version, VCS revision and Go version; always 1.",
		ConstLabels: prometheus.Labels{
			"version": info.Version, "revision": info.RevisionText(), "goversion": info.GoVersion,
		},
	})
	g.Set(1)
	return g
}
