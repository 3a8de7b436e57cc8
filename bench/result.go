package bench

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Scenario names.
const (
	Throughput = "throughput"
	Connrate   = "connrate"
	Latency    = "latency"
	Latency1   = "latency1"
	Idle       = "idle"
	Balance    = "balance"
)

// Scenarios lists every scenario in the order they run.
var Scenarios = []string{Throughput, Connrate, Latency, Latency1, Idle, Balance}

// Result is what one scenario measured against one target. Its JSON form is one line of
// `fulcrum bench --json`.
type Result struct {
	Scenario string             `json:"scenario"`
	Target   string             `json:"target"`
	Round    int                `json:"round,omitempty"` // 1-based in a comparison; 0 outside one
	Conns    int                `json:"conns"`           // clients (workers or held connections)
	Seconds  float64            `json:"seconds"`         // wall time of the measured part
	Metrics  map[string]float64 `json:"metrics"`         // see Metrics for names and units
	Notes    []string           `json:"notes,omitempty"` // what the reader must know (clamping, errors)
}

// Metric describes one entry of Result.Metrics.
type Metric struct {
	Name, Unit string
	Higher     bool // higher is better (a ratio above 1 is a win)
	Key        bool // shown in the comparison's table and chart
}

// Metrics describes every metric a scenario reports, in display order.
var Metrics = map[string][]Metric{
	Throughput: {
		{"upload_mb_s", "MB/s", true, true}, {"download_mb_s", "MB/s", true, true},
		{"cpu_us_per_mb_up", "µs CPU/MB", false, true}, {"cpu_us_per_mb_down", "µs CPU/MB", false, true},
		{"cpu_pct_up", "% of a core", false, false}, {"cpu_pct_down", "% of a core", false, false},
		{"machine_cpu_us_per_mb_up", "µs CPU/MB", false, false}, {"machine_cpu_us_per_mb_down", "µs CPU/MB", false, false},
		{"machine_cpu_pct_up", "% of a core", false, false}, {"machine_cpu_pct_down", "% of a core", false, false},
		{"client_cpu_pct_up", "% of a core", false, false}, {"client_cpu_pct_down", "% of a core", false, false},
		{"backends_cpu_pct_up", "% of a core", false, false}, {"backends_cpu_pct_down", "% of a core", false, false},
		{"upload_bytes", "B", true, false}, {"sink_bytes", "B", true, false},
		{"download_bytes", "B", true, false}, {"source_bytes", "B", true, false},
	},
	Connrate: requestMetrics("conns_per_s", "conn/s", "cpu_us_per_conn", "µs CPU/conn", "transactions"),
	Latency:  requestMetrics("requests_per_s", "req/s", "cpu_us_per_req", "µs CPU/req", "requests"),
	Latency1: requestMetrics("requests_per_s", "req/s", "cpu_us_per_req", "µs CPU/req", "requests"),
	Wrk:      requestMetrics("requests_per_s", "req/s", "cpu_us_per_req", "µs CPU/req", "requests"),
	Redis: append(requestMetrics("requests_per_s", "req/s", "cpu_us_per_req", "µs CPU/req", "requests"),
		Metric{"set_rps", "req/s", true, false}, Metric{"get_rps", "req/s", true, false}),
	Pgbench: {
		{"tps", "txn/s", true, true}, {"latency_avg_us", "µs", false, true},
		{"cpu_us_per_txn", "µs CPU/txn", false, true}, {"cpu_pct", "% of a core", false, false},
		{"machine_cpu_us_per_txn", "µs CPU/txn", false, false}, {"machine_cpu_pct", "% of a core", false, false},
		{"client_cpu_pct", "% of a core", false, false}, {"backends_cpu_pct", "% of a core", false, false},
		{"transactions", "", true, false}, {"errors", "", false, false},
	},
	Idle: {
		{"open_s", "s", false, true}, {"rss_per_conn_kib", "KiB", false, true},
		{"fds_per_conn", "fds", false, true}, {"kernel_slab_per_conn_kib", "KiB", false, true},
		{"kernel_sunreclaim_per_conn_kib", "KiB", false, false},
		{"rss_before_mib", "MiB", false, false}, {"rss_after_mib", "MiB", false, false},
		{"held", "", true, false},
	},
	ManyBackends: {
		{"heartbeats_per_s", "heartbeats/s", true, true}, {"cpu_us_per_heartbeat", "µs CPU/heartbeat", false, true},
		{"rss_per_backend_kib", "KiB", false, true}, {"scrape_s", "s", false, true}, {"scrape_mb", "MB", false, true},
		{"scrape_gzip_s", "s", false, true}, {"scrape_gzip_mb", "MB", false, true},
		{"registrations_per_s", "adds/s", true, true}, {"cpu_us_per_registration", "µs CPU/add", false, true},
		{"cpu_pct", "% of a core", false, false}, {"client_cpu_pct", "% of a core", false, false},
		{"machine_cpu_us_per_heartbeat", "µs CPU/heartbeat", false, false}, {"machine_cpu_pct", "% of a core", false, false},
		{"register_s", "s", false, false}, {"rss_before_mib", "MiB", false, false}, {"rss_registered_mib", "MiB", false, false},
		{"rss_after_mib", "MiB", false, false}, {"rss_after_scrape_mib", "MiB", false, false},
		{"backends", "", true, false}, {"heartbeats", "", true, false}, {"errors", "", false, false},
	},
	Balance: {
		{"spread", "conns", false, true}, {"balancer_agrees", "1=yes", true, true},
		{"backend_min", "", true, false}, {"backend_max", "", false, false},
		{"held", "", true, false},
	},
}

// requestMetrics are the metrics of a load of small operations: a rate, percentiles of one
// operation's time, the balancer's CPU per operation and both sides' share of a core.
func requestMetrics(rate, rateUnit, perOp, perOpUnit, count string) []Metric {
	return []Metric{
		{rate, rateUnit, true, true}, {"p50_us", "µs", false, true},
		{"p99_us", "µs", false, true}, {"p999_us", "µs", false, true},
		{perOp, perOpUnit, false, true}, {"cpu_pct", "% of a core", false, false},
		{"machine_" + perOp, perOpUnit, false, false}, {"machine_cpu_pct", "% of a core", false, false},
		{"client_cpu_pct", "% of a core", false, false}, {"backends_cpu_pct", "% of a core", false, false},
		{count, "", true, false}, {"errors", "", false, false},
	}
}

// JSON is the result as one line of JSON.
func (r Result) JSON() string {
	b, _ := json.Marshal(r) // only floats, strings and ints: cannot fail
	return string(b)
}

// Text is the result as one human-readable line.
func (r Result) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-10s %-8s", r.Scenario, r.Target)
	if r.Round > 0 {
		fmt.Fprintf(&b, " round %d", r.Round)
	}
	fmt.Fprintf(&b, " conns=%d", r.Conns)
	for _, m := range Metrics[r.Scenario] {
		if v, ok := r.Metrics[m.Name]; ok {
			fmt.Fprintf(&b, " %s=%s", m.Name, formatValue(v))
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\n    note: %s", n)
	}
	return b.String()
}

func formatValue(v float64) string {
	switch {
	case v == float64(int64(v)) && (v < 1e6 && v > -1e6):
		return fmt.Sprintf("%d", int64(v))
	case v >= 100 || v <= -100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1 || v <= -1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

// percentiles returns the p-th percentiles (0..100) of samples in microseconds; it sorts
// samples in place.
func percentiles(samples []time.Duration, ps ...float64) []float64 {
	out := make([]float64, len(ps))
	if len(samples) == 0 {
		return out
	}
	slices.Sort(samples)
	for i, p := range ps {
		idx := int(p / 100 * float64(len(samples)))
		idx = min(idx, len(samples)-1)
		out[i] = float64(samples[idx]) / float64(time.Microsecond)
	}
	return out
}

// median of vs (which it sorts); the mean of the two middle values for an even count.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	sort.Float64s(vs)
	m := len(vs) / 2
	if len(vs)%2 == 1 {
		return vs[m]
	}
	return (vs[m-1] + vs[m]) / 2
}
