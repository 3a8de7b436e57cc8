package admin

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	promsink "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fulcrumlb/fulcrum/internal/buildinfo"
	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// Metrics instruments fulcrum with go-metrics and serves what it gathered at GET /metrics in
// the Prometheus text format (only that format; gzipped when the client accepts it): the
// families of fixed size through go-metrics' Prometheus sink and client_golang's registry,
// those with a series per backend written straight from the backends' counters and the
// registries' snapshot, family by family (metrics_stream.go), so that a scrape of 50,000
// backends takes a fraction of a second and a few megabytes. It is a listener.Observer
// (see metrics_observer.go) for the data path's events, counts heartbeats for the admin API,
// and reads connection and registry gauges from each service's Registry when scraped, so they
// are exact and cost nothing between scrapes.
//
// Every name starts with "fulcrum_". Totals over every service have no label. The series of
// one service are named "fulcrum_service_..." and carry service="NAME"; those of one backend
// are named "fulcrum_backend_..." and carry service="NAME" and backend="host:port", so the
// same address in two services has two series. A backend's traffic, dial and heartbeat series
// stay until the process ends (a forgotten backend's active gauge drops to 0); its
// fulcrum_backend_up, fulcrum_backend_state, fulcrum_health_checks_failed_total and connection
// duration series show only while the registry knows it and go with it (metrics_backends.go,
// metrics_duration.go). fulcrum_build_info{version,revision,goversion} is 1 and names the
// running build. On the sockmap data plane, fulcrum_sockmap_connections{where="kernel"|"relay"}
// and fulcrum_sockmap_promotions_total say where the live connections are (sockmap.go).
//
// Connection lifetimes are Prometheus histograms (fixed buckets, metrics_duration.go), which,
// unlike summaries, add up: across backends, services, and every balancer sharing one etcd
// registry. The p99 over all of them:
//
//	histogram_quantile(0.99, sum by (le) (rate(fulcrum_connection_duration_seconds_bucket[5m])))
//
// Per-backend series are not go-metrics series: each backend has one backendSeries, made when
// it is first seen, whose atomic counters (routed connections, bytes, lifetimes, dial
// failures, heartbeats) collectors of their own read at scrape (metrics_traffic.go,
// metrics_duration.go, metrics_counters.go). A connection takes no lock and allocates nothing,
// a heartbeat of a known backend adds 1, and a backend costs a few hundred bytes. Totals and
// per-service series stay go-metrics series, but for traffic and heartbeats (the backends'
// sums, taken at scrape) and lifetimes (a histogram per service, summed for the total). The
// sink creates a series on its first update by a load and a store that are not one atomic
// step, so two first updates at once would lose one: Metrics therefore declares totals and
// configured services' series up front, and creates those of a service it was not told of,
// and each new rejection reason, under a lock.
type Metrics struct {
	services   []Service       // configured; the gauges read their registries
	registered map[string]bool // services with a registry: a backend it no longer lists is hidden
	m          *gometrics.Metrics
	gatherer   prometheus.Gatherer // the series of fixed number; per-backend ones are streamed
	backends   seriesMap           // seriesKey → *backendSeries
	svcs       sync.Map            // service name → *serviceSeries
	reasons    sync.Map            // rejection error text → its reason label value
	svcReasons sync.Map            // seriesKey{service, reason label} → that service's rejection labels

	sni  *sniCounters   // SNI routing and per-client refusals (metrics_sni.go)
	smap *sockmapGauges // where the sockmap plane's connections are (sockmap.go)

	mu      sync.Mutex         // creates series; guards the fields below
	gauged  map[seriesKey]bool // backends with an active-connections series
	nReason int                // distinct reason label values, capped at maxReasons
	// sockmapRead reads the sockmap plane's counts at each scrape (setSockmap); nil: none.
	sockmapRead func() listener.SockmapStats
}

// The go-metrics keys; the name "fulcrum" is put in front of each.
var (
	keyActive      = []string{"connections", "active"}
	keyRejected    = []string{"connections", "rejected", "total"}
	keyDialFailed  = []string{"dial", "failures", "total"}
	keyBackends    = []string{"registry", "backends"}
	keySActive     = []string{"service", "connections", "active"}
	keySBackends   = []string{"service", "backends"}
	keySRejected   = []string{"service", "connections", "rejected", "total"}
	keySDialFailed = []string{"service", "dial", "failures", "total"}
)

const (
	// metricsPrefix starts every name; go-metrics calls it the service name.
	metricsPrefix = "fulcrum"
	// maxReasons bounds the reason label of rejections: reasons come from error texts, and
	// a label must not grow without limit. Later new reasons are counted as "other".
	maxReasons = 16
	// The reason labels of rejections whose cause fulcrum knows; other causes are named by
	// their error's text.
	ReasonNoBackend   = "no_backend"   // no live backend (pool.ErrNoBackend)
	ReasonLimit       = "limit"        // every live backend at its connection limit (pool.ErrFull)
	ReasonProxyHeader = "proxy_header" // PROXY header missing from a trusted peer, or untrusted
)

// knownReasons are declared up front, at 0, so that dashboards and alerts find them.
var knownReasons = []string{ReasonNoBackend, ReasonLimit, ReasonProxyHeader}

// NewMetrics returns Metrics for a balancer of one service, "default", whose gauges read reg.
func NewMetrics(reg pool.Registry) (*Metrics, error) {
	return NewServiceMetrics([]Service{{Name: pool.DefaultService, Registry: reg}})
}

// NewServiceMetrics returns Metrics for the services given, whose gauges read each service's
// Registry (a nil Registry has no gauges). Only Name and Registry are read; names must be valid
// and distinct. Its Prometheus registry is its own, with the Go runtime and process collectors
// beside fulcrum's series.
func NewServiceMetrics(services []Service) (*Metrics, error) {
	names := make([]string, 0, len(services))
	for _, s := range services {
		if _, err := pool.ParseServiceName(s.Name); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		if slices.Contains(names, s.Name) {
			return nil, fmt.Errorf("metrics: service %q given twice", s.Name)
		}
		names = append(names, s.Name)
	}
	mt := &Metrics{
		services:   slices.Clone(services),
		registered: make(map[string]bool),
		gauged:     make(map[seriesKey]bool),
		nReason:    len(knownReasons),
		sni:        newSNICounters(),
		smap:       newSockmapGauges(),
	}
	for _, s := range services {
		mt.registered[s.Name] = s.Registry != nil
	}
	var err error
	collectors := []namedCollector{
		{"service traffic", newTrafficCollector(&mt.svcs, &mt.backends)},
		{"backend counters", newCounterCollector(&mt.svcs, &mt.backends)},
		{"connection duration", newDurationCollector(mt)},
		{"build info", newBuildInfoGauge(buildinfo.Read())},
		{"sni routing", mt.sni},
		{"sockmap", mt.smap},
	}
	if mt.m, mt.gatherer, err = newSink(names, collectors); err != nil {
		return nil, err
	}
	for _, r := range knownReasons {
		mt.reasons.Store(r, r)
		for _, name := range names {
			mt.svcReasons.Store(seriesKey{name, r}, serviceReasonLabels(name, r))
		}
	}
	for _, name := range names {
		mt.svcs.Store(name, newServiceSeries(name))
	}
	return mt, nil
}

// namedCollector is a collector of fulcrum's own, named for the error if it cannot register.
type namedCollector struct {
	name string
	c    prometheus.Collector
}

// newSink builds go-metrics over a Prometheus sink whose registry holds the runtime and
// process collectors, fulcrum's own collectors (traffic, backend states, build), and the
// series declared up front for the services named.
func newSink(services []string, own []namedCollector) (*gometrics.Metrics, prometheus.Gatherer, error) {
	pr := prometheus.NewRegistry()
	for _, c := range append([]namedCollector{
		{"go", collectors.NewGoCollector()},
		{"process", collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})},
	}, own...) {
		if err := pr.Register(c.c); err != nil {
			return nil, nil, fmt.Errorf("metrics: register %s collector: %w", c.name, err)
		}
	}
	sink, err := promsink.NewPrometheusSinkFrom(promsink.PrometheusOpts{
		Name:               "fulcrum_go_metrics_sink",
		Registerer:         pr,
		Expiration:         0, // counters must not vanish and restart while a backend idles
		GaugeDefinitions:   gaugeDefinitions(services),
		CounterDefinitions: counterDefinitions(services),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("metrics: prometheus sink: %w", err)
	}
	m, err := gometrics.New(&gometrics.Config{
		ServiceName:      metricsPrefix,
		TimerGranularity: time.Second, // durations in seconds
		FilterDefault:    true,
	}, sink)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	return m, pr, nil
}

// promName is a key as the Prometheus sink spells it, for the definitions' help texts.
func promName(key []string) []string { return append([]string{metricsPrefix}, key...) }

// The totals and the series of configured services are declared up front: they are exposed
// at 0 from the start, carry help texts, and never expire. Per-backend series appear with
// their backend's first event; the sink gives those their own name as help.
func gaugeDefinitions(services []string) []promsink.GaugeDefinition {
	defs := []promsink.GaugeDefinition{
		{Name: promName(keyActive), Help: "Connections counted on a backend now (dialing or proxying)."},
		{Name: promName(keyBackends), Help: "Backends in the registry, live or not."},
	}
	for _, s := range services {
		defs = append(defs,
			promsink.GaugeDefinition{Name: promName(keySActive), ConstLabels: serviceLabels(s),
				Help: "Connections counted on the service's backends now."},
			promsink.GaugeDefinition{Name: promName(keySBackends), ConstLabels: serviceLabels(s),
				Help: "Backends in the service's registry, live or not."})
	}
	return defs
}

func counterDefinitions(services []string) []promsink.CounterDefinition {
	defs := make([]promsink.CounterDefinition, 0, 5+len(knownReasons)+len(services)*(2+len(knownReasons)))
	for _, r := range knownReasons {
		defs = append(defs, promsink.CounterDefinition{Name: promName(keyRejected),
			Help:        "Clients closed without reaching a backend, by reason.",
			ConstLabels: []gometrics.Label{{Name: "reason", Value: r}}})
	}
	defs = append(defs, []promsink.CounterDefinition{
		{Name: promName(keyDialFailed), Help: "Failed dials to backends, retries included."},
	}...)
	for _, s := range services {
		defs = append(defs, serviceCounterDefinitions(s)...)
	}
	return defs
}

func serviceCounterDefinitions(service string) []promsink.CounterDefinition {
	labels := serviceLabels(service)
	defs := []promsink.CounterDefinition{
		{Name: promName(keySDialFailed), ConstLabels: labels, Help: "Failed dials to the service's backends, retries included."},
	}
	for _, r := range knownReasons {
		defs = append(defs, promsink.CounterDefinition{Name: promName(keySRejected),
			ConstLabels: serviceReasonLabels(service, r),
			Help:        "Clients of the service closed without reaching a backend, by reason."})
	}
	return defs
}

// ServeHTTP serves the Prometheus text exposition, after reading the gauges from the
// registries: the families of fixed size gathered by client_golang, and the per-backend ones
// written as they are read (metrics_stream.go), from one snapshot of the registries so that
// they agree. A family the registry fails to gather is left out and named in a comment at
// the end; a scrape that cannot be written (the client went away) is ended.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	snaps := m.snapshot()
	m.refreshGauges(snaps)
	sc := m.newScrape(snaps)
	gathered, err := m.gatherer.Gather()
	_ = sc.serveText(w, r, gathered, err) // it fails only when the client has gone: no one to tell
}

// snapshot reads every service's registry once, in the order of m.services (nil for a service
// without a Registry).
func (m *Metrics) snapshot() [][]pool.Status {
	snaps := make([][]pool.Status, len(m.services))
	for i, svc := range m.services {
		if svc.Registry != nil {
			snaps[i] = svc.Registry.Snapshot()
		}
	}
	return snaps
}

// refreshGauges sets the active-connection and registry-size gauges of every service and
// backend, and their totals, from one snapshot of each service's registry. A backend gone from
// its registry since the last scrape has its gauge set to 0.
func (m *Metrics) refreshGauges(snaps [][]pool.Status) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var active, backends int64
	now := make(map[seriesKey]bool, len(m.gauged))
	for i, svc := range m.services {
		if svc.Registry == nil {
			continue
		}
		var svcActive int64
		for _, s := range snaps[i] {
			svcActive += s.Active
			k := seriesKey{svc.Name, s.Key}
			now[k] = true
			m.backendLocked(k).active.Store(s.Active)
		}
		labels := m.serviceLocked(svc.Name).labels
		m.m.SetPrecisionGaugeWithLabels(keySActive, float64(svcActive), labels)
		m.m.SetPrecisionGaugeWithLabels(keySBackends, float64(len(snaps[i])), labels)
		active += svcActive
		backends += int64(len(snaps[i]))
	}
	for k := range m.gauged {
		if !now[k] {
			m.backendLocked(k).active.Store(0)
		}
	}
	m.gauged = now
	m.m.SetPrecisionGauge(keyActive, float64(active))
	m.m.SetPrecisionGauge(keyBackends, float64(backends))
	m.smap.set(m.sockmapRead, active)
}

// Heartbeat counts an admin add call for a backend of service ("" means "default") that was
// already registered. On a nil *Metrics (metrics turned off) it does nothing.
func (m *Metrics) Heartbeat(service, key string) {
	if m == nil {
		return
	}
	bs := m.backend(serviceOrDefault(service), key)
	bs.heartbeats.Add(1) // the service's and the total are its sums (metrics_counters.go)
}

// rejected counts a rejection under its reason, in total and, when service is not "", on the
// service's series.
func (m *Metrics) rejected(service string, err error) {
	label := m.reasonLabel(reasonText(err))
	m.m.IncrCounterWithLabels(keyRejected, 1, []gometrics.Label{{Name: "reason", Value: label}})
	if service != "" {
		m.m.IncrCounterWithLabels(keySRejected, 1, m.serviceReason(service, label))
	}
}

func reasonText(err error) string {
	switch {
	case err == nil:
		return "unknown"
	case errors.Is(err, pool.ErrNoBackend):
		return ReasonNoBackend
	case errors.Is(err, pool.ErrFull):
		return ReasonLimit
	case errors.Is(err, listener.ErrProxyHeaderMissing), errors.Is(err, listener.ErrProxyHeaderUntrusted):
		return ReasonProxyHeader
	}
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(err) {
		err = u
	}
	r := err.Error()
	if len(r) > 80 {
		r = r[:80]
	}
	return r
}
