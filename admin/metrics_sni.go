package admin

import (
	"github.com/prometheus/client_golang/prometheus"
)

// sniCounters count what the SNI routers of shared listen addresses decide, and the clients
// each service's per-client bounds refuse:
//
//	fulcrum_sni_routed_total{service}          connections a server-name pattern sent to the service
//	fulcrum_sni_default_total{listen}          connections the address's default took (no name, no match, not TLS)
//	fulcrum_sni_refused_total{listen,reason}   reset before routing: no_default, malformed, timeout, too_large
//	fulcrum_client_refused_total{service,reason}  closed at accept by a per-client bound: conns, rate, acl
//
// Each is a client_golang counter vector: a connection costs one labelled lookup and an add.
type sniCounters struct {
	routed, byDefault, refused, clientRefused *prometheus.CounterVec
}

var _ prometheus.Collector = (*sniCounters)(nil)

// The reasons of fulcrum_sni_refused_total and fulcrum_client_refused_total, declared at 0.
var (
	sniRefusedReasons    = []string{"no_default", "malformed", "timeout", "too_large"}
	clientRefusedReasons = []string{"conns", "rate", "acl"}
)

func newSNICounters() *sniCounters {
	return &sniCounters{
		routed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fulcrum_sni_routed_total",
			Help: "Connections on a shared address sent to the service by one of its server-name patterns."}, []string{"service"}),
		byDefault: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fulcrum_sni_default_total",
			Help: "Connections on a shared address that went to its default service (no server name, no pattern matched, or not TLS)."}, []string{"listen"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fulcrum_sni_refused_total",
			Help: "Connections on a shared address reset before routing, by reason."}, []string{"listen", "reason"}),
		clientRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fulcrum_client_refused_total",
			Help: "Connections closed at accept by the service's per-client bounds, by reason."}, []string{"service", "reason"}),
	}
}

// Describe implements prometheus.Collector.
func (c *sniCounters) Describe(ch chan<- *prometheus.Desc) {
	for _, v := range []*prometheus.CounterVec{c.routed, c.byDefault, c.refused, c.clientRefused} {
		v.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (c *sniCounters) Collect(ch chan<- prometheus.Metric) {
	for _, v := range []*prometheus.CounterVec{c.routed, c.byDefault, c.refused, c.clientRefused} {
		v.Collect(ch)
	}
}

// DeclareSNI exposes at 0 the series of one shared listen address and the services routed
// there by pattern, so that dashboards find them before the first connection.
func (m *Metrics) DeclareSNI(listen string, patterned []string) {
	m.sni.byDefault.WithLabelValues(listen)
	for _, r := range sniRefusedReasons {
		m.sni.refused.WithLabelValues(listen, r)
	}
	for _, s := range patterned {
		m.sni.routed.WithLabelValues(s)
	}
}

// DeclareClientBounds exposes at 0 the per-client refusals of a service that has bounds.
func (m *Metrics) DeclareClientBounds(service string) {
	for _, r := range clientRefusedReasons {
		m.sni.clientRefused.WithLabelValues(service, r)
	}
}

// SNIRouted counts a connection an SNI router sent on (listener.SNIObserver).
func (m *Metrics) SNIRouted(listen, service string, byDefault bool) {
	if byDefault {
		m.sni.byDefault.WithLabelValues(listen).Inc()
		return
	}
	m.sni.routed.WithLabelValues(service).Inc()
}

// SNIRefused counts a connection an SNI router reset (listener.SNIObserver).
func (m *Metrics) SNIRefused(listen, reason string) {
	m.sni.refused.WithLabelValues(listen, reason).Inc()
}

// ClientRefused counts a connection a service's per-client bounds closed at accept.
func (m *Metrics) ClientRefused(service, reason string) {
	m.sni.clientRefused.WithLabelValues(service, reason).Inc()
}
