package admin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fulcrumlb/fulcrum/internal/buildinfo"
)

// The scrape writes, from the snapshot of each service's registry it took (Metrics.ServeHTTP,
// the same that sets the active-connection gauges), what alerting asks of a backend
// (scrape.streamed, metrics_stream.go):
//
//	fulcrum_backend_up{service,backend}                   1 when picking may choose it (state up or static), else 0
//	fulcrum_backend_state{service,backend,state}          one series per state, 1 for the current one
//	fulcrum_health_checks_failed_total{service,backend}   active health checks failed
//
// The states are those /upstream/status reports (pool.States). These series exist only while
// the registry knows the backend: a forgotten backend's disappear at the next scrape, and its
// failed-check count starts again at 0 if it is registered anew (a counter reset, which
// Prometheus' rate() expects).

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
