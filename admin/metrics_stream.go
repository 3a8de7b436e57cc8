package admin

import (
	"bufio"
	"cmp"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fulcrumlb/fulcrum/internal/histogram"
	"github.com/fulcrumlb/fulcrum/pool"
)

// A scrape writes the families with one series per backend straight from the backends'
// counters and the registries' snapshot, in the text format, family by family; only the
// families of fixed size (totals, services, runtime, process, build) go through client_golang's
// registry, and the two are merged in name order into one response. With 50,000 backends the
// per-backend families are 700,000 lines: gathered by client_golang they took 4.6 s and
// half a gigabyte of garbage per scrape, streamed they take a few allocations per backend
// and a buffer. The exposition is the same (names, labels, types, help texts, values);
// the one difference is that /metrics now answers in the text format only, never the
// protocol-buffer format a client may ask for (Prometheus reads either), and compresses
// with gzip at its fastest level when the client accepts gzip.
var backendFamilies = struct {
	bytesIn, bytesOut, duration, active, routed, dialFailed, heartbeats, state, up, checksFailed textFamily
}{
	bytesIn:      textFamily{"fulcrum_backend_bytes_in_total", "Bytes carried client to the backend.", "counter"},
	bytesOut:     textFamily{"fulcrum_backend_bytes_out_total", "Bytes carried the backend to client.", "counter"},
	duration:     textFamily{"fulcrum_backend_connection_duration_seconds", durationHelp + ", of the backend.", "histogram"},
	active:       textFamily{"fulcrum_backend_connections_active", "Connections counted on the backend now (dialing or proxying).", "gauge"},
	routed:       textFamily{"fulcrum_backend_connections_routed_total", "Connections proxied to the backend (dial succeeded).", "counter"},
	dialFailed:   textFamily{"fulcrum_backend_dial_failures_total", "Failed dials to the backend, retries included.", "counter"},
	heartbeats:   textFamily{"fulcrum_backend_heartbeats_total", "Admin add calls for the backend while it was registered.", "counter"},
	state:        textFamily{"fulcrum_backend_state", "The backend's state, as /upstream/status reports it: 1 for the current one, 0 for the others.", "gauge"},
	up:           textFamily{"fulcrum_backend_up", "1 when picking may choose the backend (state up or static), else 0.", "gauge"},
	checksFailed: textFamily{"fulcrum_health_checks_failed_total", "Active health checks of the backend that failed.", "counter"},
}

// backendRow is one backend's series as a scrape reads them.
type backendRow struct {
	key    seriesKey
	bs     *backendSeries
	labels []byte // backend="KEY",service="NAME", escaped
}

// scrape is what one GET /metrics writes from: the registries' snapshot (in the order of
// Metrics.services) and every backend's series, sorted by backend then service, as
// client_golang sorts series.
type scrape struct {
	m     *Metrics
	snaps [][]pool.Status
	rows  []backendRow
}

func (m *Metrics) newScrape(snaps [][]pool.Status) *scrape {
	n := 16 // the backends listed now, a good guess at the backends ever seen
	for _, s := range snaps {
		n += len(s)
	}
	sc := &scrape{m: m, snaps: snaps, rows: make([]backendRow, 0, n)}
	// Every row's labels, one after the other: one allocation, not one a backend.
	labels := make([]byte, 0, n*48)
	spans := make([][2]int, 0, n)
	m.backends.each(func(key seriesKey, bs *backendSeries) bool {
		start := len(labels)
		if labels = backendLabels(labels, key.service, key.name); start > 0 {
			start++ // the comma appendLabel put between this row's labels and the one before
		}
		spans = append(spans, [2]int{start, len(labels)})
		sc.rows = append(sc.rows, backendRow{key: key, bs: bs})
		return true
	})
	for i, sp := range spans {
		sc.rows[i].labels = labels[sp[0]:sp[1]:sp[1]]
	}
	slices.SortFunc(sc.rows, func(a, b backendRow) int {
		return cmp.Or(strings.Compare(a.key.name, b.key.name), strings.Compare(a.key.service, b.key.service))
	})
	return sc
}

func backendLabels(dst []byte, service, backend string) []byte {
	return appendLabel(appendLabel(dst, "backend", backend), "service", service)
}

// streamed are the per-backend families in name order, each with the function that writes
// its series.
func (sc *scrape) streamed() []struct {
	f     *textFamily
	write func(*textWriter)
} {
	bf := &backendFamilies
	counter := func(read func(*backendSeries) uint64) func(*textWriter) {
		return func(t *textWriter) { sc.eachRow(t, func(r *backendRow) float64 { return float64(read(r.bs)) }) }
	}
	return []struct {
		f     *textFamily
		write func(*textWriter)
	}{
		{&bf.bytesIn, counter(func(bs *backendSeries) uint64 { return bs.traffic.bytesIn.Load() })},
		{&bf.bytesOut, counter(func(bs *backendSeries) uint64 { return bs.traffic.bytesOut.Load() })},
		{&bf.duration, sc.durations},
		{&bf.active, func(t *textWriter) {
			sc.eachRow(t, func(r *backendRow) float64 { return float64(r.bs.active.Load()) })
		}},
		{&bf.routed, counter(func(bs *backendSeries) uint64 { return bs.traffic.routed.Load() })},
		{&bf.dialFailed, counter(func(bs *backendSeries) uint64 { return bs.dialFailed.Load() })},
		{&bf.heartbeats, counter(func(bs *backendSeries) uint64 { return bs.heartbeats.Load() })},
		{&bf.state, sc.states},
		{&bf.up, func(t *textWriter) {
			sc.eachStatus(t, func(_ []byte, s *pool.Status) { t.sample(bf.up.name, t.labels, one(s.State.Pickable())) })
		}},
		{&bf.checksFailed, func(t *textWriter) {
			sc.eachStatus(t, func(_ []byte, s *pool.Status) { t.sample(bf.checksFailed.name, t.labels, float64(s.ChecksFailed)) })
		}},
	}
}

// eachRow writes one series of the current family per backend ever seen.
func (sc *scrape) eachRow(t *textWriter, value func(*backendRow) float64) {
	name := t.pending.name
	for i := range sc.rows {
		t.sample(name, sc.rows[i].labels, value(&sc.rows[i]))
	}
}

// eachStatus calls write for every backend of the snapshot, with t.labels set to its labels.
func (sc *scrape) eachStatus(t *textWriter, write func([]byte, *pool.Status)) {
	for i, svc := range sc.m.services {
		for j := range sc.snaps[i] {
			s := &sc.snaps[i][j]
			t.labels = backendLabels(t.labels[:0], svc.Name, s.Key)
			write(t.labels, s)
		}
	}
}

// states writes fulcrum_backend_state: one series per state for every backend the
// registries list, 1 for its state.
func (sc *scrape) states(t *textWriter) {
	states := pool.States()
	name := backendFamilies.state.name
	base := 0
	sc.eachStatus(t, func(labels []byte, s *pool.Status) {
		base = len(labels)
		for _, st := range states {
			t.labels = appendLabel(t.labels[:base], "state", string(st))
			t.sample(name, t.labels, one(s.State == st))
		}
	})
}

// durations writes the lifetimes of every backend its registry knows (or whose service has
// none) that has had a connection: the buckets by upper bound, +Inf, sum and count.
func (sc *scrape) durations(t *textWriter) {
	known := sc.m.knownBackends()
	name := backendFamilies.duration.name
	bounds := backendDurationBounds
	le := make([]string, bounds.Len())
	for b := range le {
		le[b] = strconv.FormatFloat(bounds.Seconds(b), 'g', -1, 64)
	}
	var s histogram.Snapshot
	for i := range sc.rows {
		r := &sc.rows[i]
		if !known(r.key) {
			continue
		}
		if r.bs.dur.Snapshot(&s); s.Count == 0 {
			continue
		}
		for b := range bounds.Len() {
			t.labels = appendLabel(append(t.labels[:0], r.labels...), "le", le[b])
			t.sample(name+"_bucket", t.labels, float64(s.Cumulative(b)))
		}
		t.labels = appendLabel(append(t.labels[:0], r.labels...), "le", "+Inf")
		t.sample(name+"_bucket", t.labels, float64(s.Count))
		t.sample(name+"_sum", r.labels, s.Sum.Seconds())
		t.sample(name+"_count", r.labels, float64(s.Count))
	}
}

// write writes the gathered families and the streamed ones, merged in name order.
func (sc *scrape) write(t *textWriter, gathered []*dto.MetricFamily) error {
	for _, s := range sc.streamed() {
		for len(gathered) > 0 && gathered[0].GetName() < s.f.name {
			if _, err := expfmt.MetricFamilyToText(t.w, gathered[0]); err != nil {
				return fmt.Errorf("metrics: write %s: %w", gathered[0].GetName(), err)
			}
			gathered = gathered[1:]
		}
		t.family(s.f)
		s.write(t)
		t.pending = nil
		if err := t.Err(); err != nil {
			return fmt.Errorf("metrics: write %s: %w", s.f.name, err)
		}
	}
	for _, mf := range gathered {
		if _, err := expfmt.MetricFamilyToText(t.w, mf); err != nil {
			return fmt.Errorf("metrics: write %s: %w", mf.GetName(), err)
		}
	}
	return t.w.Flush()
}

// textContentType is the text format's media type, as client_golang's handler names it.
var textContentType = string(expfmt.NewFormat(expfmt.TypeTextPlain)) + "; escaping=" + model.NameEscapingScheme.String()

// gzipWriters are reused between scrapes: a compressor's tables are large.
var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed) // a valid level: no error
	return w
}}

// bufWriters are the scrapes' output buffers.
var bufWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// serveText writes the exposition to w, gzipped if the request accepts it. A family the
// registry could not gather is left out and named in a comment line at the end, as the
// exposition is still worth having.
func (sc *scrape) serveText(w http.ResponseWriter, r *http.Request, gathered []*dto.MetricFamily, gatherErr error) error {
	w.Header().Set("Content-Type", textContentType)
	w.Header().Add("Vary", "Accept-Encoding")
	var out io.Writer = w
	var gz *gzip.Writer
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		w.Header().Set("Content-Encoding", "gzip")
		gz = gzipWriters.Get().(*gzip.Writer)
		gz.Reset(w)
		defer gzipWriters.Put(gz)
		out = gz
	}
	bw := bufWriters.Get().(*bufio.Writer)
	bw.Reset(out)
	defer func() { bw.Reset(nil); bufWriters.Put(bw) }()
	t := newTextWriter(bw)
	if err := sc.write(t, gathered); err != nil {
		return err
	}
	if gatherErr != nil {
		fmt.Fprintf(bw, "# some series could not be read: %s\n", strings.ReplaceAll(gatherErr.Error(), "\n", "; "))
	}
	if err := bw.Flush(); err != nil || gz == nil {
		return err
	}
	return gz.Close()
}

// acceptsGzip reports whether an Accept-Encoding header lists gzip (or *) with a quality
// above 0.
func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != "gzip" && coding != "*" {
			continue
		}
		q := 1.0
		for p := range strings.SplitSeq(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
		}
		if q > 0 {
			return true
		}
	}
	return false
}
