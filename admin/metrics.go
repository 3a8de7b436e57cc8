package admin

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	promsink "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// Metrics instruments fulcrum with go-metrics and serves what it gathered at GET /metrics in
// the Prometheus text format, through go-metrics' Prometheus sink. It is a listener.Observer
// (see metrics_observer.go) for the data path's events, counts heartbeats for the admin API,
// and reads connection and registry gauges from the Registry when scraped, so they are exact
// and cost nothing between scrapes.
//
// Every name starts with "fulcrum_". Totals have no label; the per-backend series of the same
// measure are named "fulcrum_backend_..." and carry backend="host:port". A backend's series
// stay until the process ends (a forgotten backend's active gauge drops to 0).
//
// The sink creates a series on its first update by a load and a store that are not one atomic
// step, so two first updates at once would lose one. Metrics therefore creates every series
// under a lock: totals are declared up front, a backend's counters are created at 0 when it is
// first seen, and its first duration sample and each new rejection reason are taken one at a time.
type Metrics struct {
	registry pool.Registry
	m        *gometrics.Metrics
	handler  http.Handler
	series   sync.Map // backend key → *backendSeries
	reasons  sync.Map // rejection error text → its reason label value
	open     sync.Map // *connMeter of every open connection, flushed before each scrape

	mu      sync.Mutex      // creates series; guards the fields below
	gauged  map[string]bool // backends with an active-connections series
	nReason int             // distinct reason label values, capped at maxReasons
}

// backendSeries is one backend's label set, and whether its duration summary exists yet.
type backendSeries struct {
	labels []gometrics.Label
	timed  atomic.Bool
}

// The go-metrics keys; the service name "fulcrum" is put in front of each.
var (
	keyActive      = []string{"connections", "active"}
	keyRouted      = []string{"connections", "routed", "total"}
	keyRejected    = []string{"connections", "rejected", "total"}
	keyDialFailed  = []string{"dial", "failures", "total"}
	keyBytesIn     = []string{"bytes", "in", "total"}
	keyBytesOut    = []string{"bytes", "out", "total"}
	keyDuration    = []string{"connection", "duration", "seconds"}
	keyBackends    = []string{"registry", "backends"}
	keyHeartbeats  = []string{"heartbeats", "total"}
	keyBActive     = []string{"backend", "connections", "active"}
	keyBRouted     = []string{"backend", "connections", "routed", "total"}
	keyBDialFailed = []string{"backend", "dial", "failures", "total"}
	keyBBytesIn    = []string{"backend", "bytes", "in", "total"}
	keyBBytesOut   = []string{"backend", "bytes", "out", "total"}
	keyBDuration   = []string{"backend", "connection", "duration", "seconds"}
	keyBHeartbeats = []string{"backend", "heartbeats", "total"}
)

const (
	serviceName = "fulcrum"
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

// NewMetrics returns Metrics whose gauges read reg. Its Prometheus registry is its own, with
// the Go runtime and process collectors beside fulcrum's series.
func NewMetrics(reg pool.Registry) (*Metrics, error) {
	pr := prometheus.NewRegistry()
	if err := pr.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("metrics: register go collector: %w", err)
	}
	if err := pr.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("metrics: register process collector: %w", err)
	}
	sink, err := promsink.NewPrometheusSinkFrom(promsink.PrometheusOpts{
		Name:               "fulcrum_go_metrics_sink",
		Registerer:         pr,
		Expiration:         0, // counters must not vanish and restart while a backend idles
		GaugeDefinitions:   gaugeDefinitions(),
		CounterDefinitions: counterDefinitions(),
		SummaryDefinitions: summaryDefinitions(),
	})
	if err != nil {
		return nil, fmt.Errorf("metrics: prometheus sink: %w", err)
	}
	m, err := gometrics.New(&gometrics.Config{
		ServiceName:      serviceName,
		TimerGranularity: time.Second, // durations in seconds
		FilterDefault:    true,
	}, sink)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mt := &Metrics{
		registry: reg,
		m:        m,
		handler:  promhttp.HandlerFor(pr, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}),
		gauged:   make(map[string]bool),
		nReason:  len(knownReasons),
	}
	for _, r := range knownReasons {
		mt.reasons.Store(r, r)
	}
	return mt, nil
}

// promName is a key as the Prometheus sink spells it, for the definitions' help texts.
func promName(key []string) []string { return append([]string{serviceName}, key...) }

// The totals are declared up front: they are exposed at 0 from the start, carry help texts,
// and never expire. Per-backend series appear with their backend's first event; the sink
// gives those their own name as help.
func gaugeDefinitions() []promsink.GaugeDefinition {
	return []promsink.GaugeDefinition{
		{Name: promName(keyActive), Help: "Connections counted on a backend now (dialing or proxying)."},
		{Name: promName(keyBackends), Help: "Backends in the registry, live or not."},
	}
}

func counterDefinitions() []promsink.CounterDefinition {
	defs := make([]promsink.CounterDefinition, 0, 8+len(knownReasons))
	for _, r := range knownReasons {
		defs = append(defs, promsink.CounterDefinition{Name: promName(keyRejected),
			Help:        "Clients closed without reaching a backend, by reason.",
			ConstLabels: []gometrics.Label{{Name: "reason", Value: r}}})
	}
	return append(defs, []promsink.CounterDefinition{
		{Name: promName(keyRouted), Help: "Connections proxied to a backend (dial succeeded)."},
		{Name: promName(keyDialFailed), Help: "Failed dials to backends, retries included."},
		{Name: promName(keyBytesIn), Help: "Bytes carried client to backend."},
		{Name: promName(keyBytesOut), Help: "Bytes carried backend to client."},
		{Name: promName(keyHeartbeats), Help: "Admin add calls for backends already registered."},
	}...)
}

func summaryDefinitions() []promsink.SummaryDefinition {
	return []promsink.SummaryDefinition{
		{Name: promName(keyDuration), Help: "Proxied connection lifetimes, accept to close, in seconds."},
	}
}

// ServeHTTP serves the Prometheus text exposition, after reading the gauges from the registry.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.open.Range(func(k, _ any) bool {
		k.(*connMeter).flushPending()
		return true
	})
	m.refreshGauges()
	m.handler.ServeHTTP(w, r)
}

// refreshGauges sets the active-connection and registry-size gauges from a registry snapshot.
// A backend gone from the registry since the last scrape has its gauge set to 0.
func (m *Metrics) refreshGauges() {
	snap := m.registry.Snapshot()
	m.mu.Lock()
	defer m.mu.Unlock()
	var total int64
	now := make(map[string]bool, len(snap))
	for _, s := range snap {
		total += s.Active
		now[s.Key] = true
		m.m.SetPrecisionGaugeWithLabels(keyBActive, float64(s.Active), m.backendLocked(s.Key).labels)
	}
	for key := range m.gauged {
		if !now[key] {
			m.m.SetPrecisionGaugeWithLabels(keyBActive, 0, m.backendLocked(key).labels)
		}
	}
	m.gauged = now
	m.m.SetPrecisionGauge(keyActive, float64(total))
	m.m.SetPrecisionGauge(keyBackends, float64(len(snap)))
}

// backend returns the series of the backend with key, creating its counters at 0 on first sight.
func (m *Metrics) backend(key string) *backendSeries {
	if bs, ok := m.series.Load(key); ok {
		return bs.(*backendSeries)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.backendLocked(key)
}

// backendLocked is backend for a caller that holds m.mu.
func (m *Metrics) backendLocked(key string) *backendSeries {
	if bs, ok := m.series.Load(key); ok {
		return bs.(*backendSeries)
	}
	bs := &backendSeries{labels: []gometrics.Label{{Name: "backend", Value: key}}}
	for _, k := range [][]string{keyBRouted, keyBDialFailed, keyBBytesIn, keyBBytesOut, keyBHeartbeats} {
		m.m.IncrCounterWithLabels(k, 0, bs.labels)
	}
	m.series.Store(key, bs)
	return bs
}

// duration adds a backend's connection lifetime; its first sample creates the summary, alone.
func (m *Metrics) duration(bs *backendSeries, start time.Time) {
	if bs.timed.Load() {
		m.m.MeasureSinceWithLabels(keyBDuration, start, bs.labels)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m.MeasureSinceWithLabels(keyBDuration, start, bs.labels)
	bs.timed.Store(true)
}

// Heartbeat counts an admin add call for a backend that was already registered. On a nil
// *Metrics (metrics turned off) it does nothing.
func (m *Metrics) Heartbeat(key string) {
	if m == nil {
		return
	}
	m.m.IncrCounterWithLabels(keyBHeartbeats, 1, m.backend(key).labels)
	m.m.IncrCounter(keyHeartbeats, 1)
}

// rejected counts a rejection under its reason: one of the known reasons, otherwise the text
// of the innermost wrapped error; at most maxReasons label values, later new texts as "other".
// A reason seen before costs no lock.
func (m *Metrics) rejected(err error) {
	text := reasonText(err)
	if label, ok := m.reasons.Load(text); ok {
		m.m.IncrCounterWithLabels(keyRejected, 1, []gometrics.Label{{Name: "reason", Value: label.(string)}})
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	label := text
	if v, ok := m.reasons.Load(text); ok {
		label = v.(string)
	} else if m.nReason >= maxReasons {
		label = "other"
	} else {
		m.nReason++
	}
	// The first count of a new label value creates its series, under the lock.
	m.m.IncrCounterWithLabels(keyRejected, 1, []gometrics.Label{{Name: "reason", Value: label}})
	m.reasons.Store(text, label)
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
