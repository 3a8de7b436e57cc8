package admin_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// perBackend are the families with one series per backend (per backend and state for
// fulcrum_backend_state): the ones a scrape writes itself. true: shown only while the registry
// lists the backend.
var perBackend = map[string]struct {
	typ      dto.MetricType
	listed   bool
	perState bool
}{
	"fulcrum_backend_bytes_in_total":              {dto.MetricType_COUNTER, false, false},
	"fulcrum_backend_bytes_out_total":             {dto.MetricType_COUNTER, false, false},
	"fulcrum_backend_connection_duration_seconds": {dto.MetricType_HISTOGRAM, true, false},
	"fulcrum_backend_connections_active":          {dto.MetricType_GAUGE, false, false},
	"fulcrum_backend_connections_routed_total":    {dto.MetricType_COUNTER, false, false},
	"fulcrum_backend_dial_failures_total":         {dto.MetricType_COUNTER, false, false},
	"fulcrum_backend_heartbeats_total":            {dto.MetricType_COUNTER, false, false},
	"fulcrum_backend_state":                       {dto.MetricType_GAUGE, true, true},
	"fulcrum_backend_up":                          {dto.MetricType_GAUGE, true, false},
	"fulcrum_health_checks_failed_total":          {dto.MetricType_COUNTER, true, false},
}

// manyBackends is a pool of n backends registered by heartbeat, and Metrics over it that has
// counted a heartbeat and a one-millisecond connection on each.
func manyBackends(t *testing.T, n int) (*pool.Pool, *admin.Metrics) {
	t.Helper()
	p := &pool.Pool{Logger: quiet}
	for i := range n {
		a, err := pool.ParseAddress("127.0.0.1:" + strconv.Itoa(20000+i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Register(a, 1); err != nil {
			t.Fatal(err)
		}
	}
	m, err := admin.NewMetrics(p)
	if err != nil {
		t.Fatal(err)
	}
	for range n { // least connections: each Acquire takes a backend not yet taken
		b, err := p.Acquire(netip.Addr{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		m.Heartbeat("", b.Key())
		c := &listener.ConnInfo{Backend: b, Start: time.Now().Add(-time.Millisecond)}
		m.Opened(c).Moved(true, 10)
		m.Closed(c, listener.Traffic{Up: 10})
		if err := p.Release(b); err != nil {
			t.Fatal(err)
		}
	}
	return p, m
}

// scrapeBody is one GET /metrics served by m, its body decompressed if it was gzipped.
func scrapeBody(t *testing.T, m *admin.Metrics, acceptEncoding string) []byte {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if acceptEncoding != "" {
		req.Header.Set("Accept-Encoding", acceptEncoding)
	}
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("Content-Type %q, want the text format 0.0.4", ct)
	}
	body := rec.Body.Bytes()
	if rec.Header().Get("Content-Encoding") != "gzip" {
		return body
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return plain
}

func parseText(t *testing.T, body []byte) opsFamilies {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// TestMetricsScrapeManyBackends: the whole exposition with 1,000 backends reads back with the
// text parser, each family once and in name order, with one series per backend (per state)
// of the right type and value; gzipped or not, the same; after 10 backends are forgotten,
// the families of listed backends lose them and the counters keep them.
func TestMetricsScrapeManyBackends(t *testing.T) {
	const n = 1000
	p, m := manyBackends(t, n)
	body := scrapeBody(t, m, "")
	checkFamilyOrder(t, body)
	fams := parseText(t, body)
	checkPerBackend(t, fams, n, n)
	for _, name := range []string{"fulcrum_heartbeats_total", "fulcrum_connections_routed_total", "fulcrum_connection_duration_seconds"} {
		if got := opsValue(fams, name, nil); got != n {
			t.Errorf("%s = %v, want %d", name, got, n)
		}
	}
	if z := scrapeBody(t, m, "deflate, gzip;q=0.8"); !bytes.Equal(withoutProcess(z), withoutProcess(body)) {
		t.Errorf("the gzipped exposition differs from the plain one")
	}
	for i := range 10 {
		if err := p.Deregister("127.0.0.1:" + strconv.Itoa(20000+i)); err != nil {
			t.Fatal(err)
		}
	}
	checkPerBackend(t, parseText(t, scrapeBody(t, m, "gzip")), n, n-10)
}

// checkPerBackend checks the per-backend families: seen backends in the counters, listed
// ones in the others, and each series' value after manyBackends.
func checkPerBackend(t *testing.T, fams opsFamilies, seen, listed int) {
	t.Helper()
	for name, want := range perBackend {
		f := fams[name]
		if f == nil {
			t.Errorf("%s missing", name)
			continue
		}
		if f.GetType() != want.typ || f.GetHelp() == "" {
			t.Errorf("%s: type %v, help %q; want %v and a help text", name, f.GetType(), f.GetHelp(), want.typ)
		}
		count := seen
		if want.listed {
			count = listed
		}
		if want.perState {
			count *= len(pool.States())
		}
		if got := len(f.GetMetric()); got != count {
			t.Errorf("%s: %d series, want %d", name, got, count)
		}
		for _, s := range f.GetMetric() {
			checkSeries(t, name, s)
		}
	}
}

// checkSeries checks one series against what manyBackends counted for each backend.
func checkSeries(t *testing.T, name string, s *dto.Metric) {
	t.Helper()
	labels := map[string]string{}
	for _, l := range s.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	var got, want float64
	switch name {
	case "fulcrum_backend_connection_duration_seconds":
		h := s.GetHistogram()
		got, want = float64(h.GetSampleCount()), 1
		if b := h.GetBucket(); len(b) != 9 || b[0].GetCumulativeCount() != 0 || b[1].GetCumulativeCount() != 1 {
			t.Errorf("%s%v: buckets %v, want the 1 ms connection under 10 ms", name, labels, b)
		}
	case "fulcrum_backend_state":
		got, want = s.GetGauge().GetValue(), 0
		if labels["state"] == string(pool.StateUp) {
			want = 1
		}
	case "fulcrum_backend_bytes_in_total":
		got, want = s.GetCounter().GetValue(), 10
	case "fulcrum_backend_bytes_out_total", "fulcrum_backend_dial_failures_total", "fulcrum_health_checks_failed_total":
		got, want = s.GetCounter().GetValue(), 0
	case "fulcrum_backend_connections_active":
		got, want = s.GetGauge().GetValue(), 0
	case "fulcrum_backend_up":
		got, want = s.GetGauge().GetValue(), 1
	default: // routed, heartbeats
		got, want = s.GetCounter().GetValue(), 1
	}
	if got != want || labels["service"] != pool.DefaultService || !strings.HasPrefix(labels["backend"], "127.0.0.1:") {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// checkFamilyOrder: every family's TYPE line once, in name order, as client_golang's
// handler wrote them.
func checkFamilyOrder(t *testing.T, body []byte) {
	t.Helper()
	var names []string
	for line := range strings.SplitSeq(string(body), "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			names = append(names, strings.Fields(name)[0])
		}
	}
	if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Errorf("families not once each in name order: %v", names)
	}
}

// withoutProcess drops the runtime's and the process's series, which change between two
// scrapes.
func withoutProcess(body []byte) []byte {
	var out []byte
	for line := range bytes.Lines(body) {
		if !bytes.Contains(line, []byte(" go_")) && !bytes.HasPrefix(line, []byte("go_")) &&
			!bytes.Contains(line, []byte(" process_")) && !bytes.HasPrefix(line, []byte("process_")) {
			out = append(out, line...)
		}
	}
	return out
}
