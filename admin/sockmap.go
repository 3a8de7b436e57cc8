package admin

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fulcrumlb/fulcrum/listener"
)

// On the sockmap data plane, /upstream/status and /metrics say where the live connections
// are: in the kernel (promoted: the kernel relays their bytes) or on the loops' user-space
// relay (not promoted yet, never, or still dialing), and how many were ever promoted.
//
//	"sockmap": {"kernel": N, "relay": M, "promoted": P, "paused": D}
//	fulcrum_sockmap_connections{where="kernel"|"relay"}   gauge
//	fulcrum_sockmap_promotions_total                      counter
//	fulcrum_sockmap_pauses_total                          counter
//
// Both read Overview.Sockmap, and show nothing when it is nil (any other plane).

// sockmapCounts is the "sockmap" object of /upstream/status.
type sockmapCounts struct {
	Kernel   int64 `json:"kernel"`   // connections the kernel relays now
	Relay    int64 `json:"relay"`    // the other live connections: active less kernel
	Promoted int64 `json:"promoted"` // connections moved into the kernel since the start
	// Paused counts directions taken back out of the kernel since the start because their
	// destination stopped reading (back-pressure); the relay moved the rest of their bytes.
	Paused int64 `json:"paused"`
}

// splitActive divides active, the connections counted on backends now (the sum of the
// services' "active"), between the kernel and the relay. The two are read at different
// instants (the registries' snapshot, then the loops' count), so a connection that ends, or
// one picked and promoted, in between can make the kernel's count exceed active: kernel is
// clamped to active, so that relay is never negative and kernel + relay is always active.
func splitActive(st listener.SockmapStats, active int64) sockmapCounts {
	active = max(active, 0)
	kernel := min(max(int64(st.InKernel), 0), active)
	return sockmapCounts{Kernel: kernel, Relay: active - kernel, Promoted: int64(st.Promoted), Paused: int64(st.Paused)}
}

// sockmapSource is the Overview's reader of the sockmap plane's counts; nil without one.
func (o *Overview) sockmapSource() func() listener.SockmapStats {
	if o == nil {
		return nil
	}
	return o.Sockmap
}

// activeTotal sums the connections counted on every service's backends now.
func (a *API) activeTotal() int64 {
	var n int64
	for _, svc := range a.services() {
		if svc.Registry == nil {
			continue
		}
		for _, s := range svc.Registry.Snapshot() {
			n += s.Active
		}
	}
	return n
}

// sockmapGauges expose the sockmap counts that refreshGauges last set, once it has set them:
// one pointer, so that a scrape never sees the kernel count of one refresh beside the relay
// count of another.
type sockmapGauges struct {
	last                      atomic.Pointer[sockmapCounts] // nil: never set (any other plane)
	conns, promotions, pauses *prometheus.Desc
}

var _ prometheus.Collector = (*sockmapGauges)(nil)

func newSockmapGauges() *sockmapGauges {
	return &sockmapGauges{
		conns: prometheus.NewDesc("fulcrum_sockmap_connections",
			"Live connections on the sockmap data plane, by where their bytes move: in the kernel (promoted) or on the user-space relay.",
			[]string{"where"}, nil),
		promotions: prometheus.NewDesc("fulcrum_sockmap_promotions_total",
			"Connections moved into the kernel since the start (sockmap data plane).", nil, nil),
		pauses: prometheus.NewDesc("fulcrum_sockmap_pauses_total",
			"Directions of promoted connections taken back out of the kernel since the start because their destination stopped reading (sockmap data plane).", nil, nil),
	}
}

// set records the counts of one scrape; a nil read (any other plane) leaves them hidden.
func (g *sockmapGauges) set(read func() listener.SockmapStats, active int64) {
	if read == nil {
		return
	}
	c := splitActive(read(), active)
	g.last.Store(&c)
}

// Describe implements prometheus.Collector.
func (g *sockmapGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.conns
	ch <- g.promotions
	ch <- g.pauses
}

// Collect implements prometheus.Collector.
func (g *sockmapGauges) Collect(ch chan<- prometheus.Metric) {
	c := g.last.Load()
	if c == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(g.conns, prometheus.GaugeValue, float64(c.Kernel), "kernel")
	ch <- prometheus.MustNewConstMetric(g.conns, prometheus.GaugeValue, float64(c.Relay), "relay")
	ch <- prometheus.MustNewConstMetric(g.promotions, prometheus.CounterValue, float64(c.Promoted))
	ch <- prometheus.MustNewConstMetric(g.pauses, prometheus.CounterValue, float64(c.Paused))
}

// setSockmap tells the metrics where to read the sockmap counts; the API calls it before each
// scrape, as setRegistry. nil (any other plane) shows none.
func (m *Metrics) setSockmap(read func() listener.SockmapStats) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sockmapRead = read
}
