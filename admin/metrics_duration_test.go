package admin_test

import (
	"math"
	"net/netip"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

const (
	durTotal   = "fulcrum_connection_duration_seconds"
	durService = "fulcrum_service_connection_duration_seconds"
	durBackend = "fulcrum_backend_connection_duration_seconds"
)

// TestMetricsDurationHeldConnection holds a real proxied connection open for a measured time:
// its lifetime lands in the bucket of that time, in the backend's, the service's and the
// total histogram, and _sum is that time.
func TestMetricsDurationHeldConnection(t *testing.T) {
	a := opsEcho(t)
	rig := newOpsMetricsRig(t, a)
	fams := rig.scrape(t)
	for _, name := range []string{durTotal, durService} {
		if h := durHistogram(t, fams, name, nil); h.GetSampleCount() != 0 {
			t.Fatalf("%s before any connection: count %d", name, h.GetSampleCount())
		}
	}
	if opsValue(fams, durBackend, opsBackend(a)) != -1 {
		t.Errorf("%s exposed before the backend's first connection ended", durBackend)
	}

	const hold = 300 * time.Millisecond // well inside (0.25, 0.5] on an idle machine
	before := time.Now()
	c := opsHold(t, rig.proxy) // accepted and relaying once the echo is back
	relaying := time.Now()
	time.Sleep(hold) // the length being measured, not a synchronisation
	closing := time.Now()
	c.Close()
	rig.eventually(t, "the connection's lifetime recorded", func(f opsFamilies) bool {
		return opsValue(f, durBackend, opsBackend(a)) == 1
	})
	// The proxy accepted after `before` and was relaying by `relaying`; it closed after
	// `closing` and had recorded the lifetime by now.
	lo, hi := closing.Sub(relaying), time.Since(before)
	fams = rig.scrape(t)
	for _, s := range []struct {
		name   string
		labels map[string]string
	}{
		{durBackend, opsBackend(a)},
		{durService, map[string]string{"service": pool.DefaultService}},
		{durTotal, nil},
	} {
		durOneIn(t, s.name, durHistogram(t, fams, s.name, s.labels), lo, hi)
	}
}

// TestMetricsDurationKnownLengths calls the observer with connections of known lengths, on two
// services: each lands in its bucket, buckets add up to _count, _sum is the lengths' sum, and
// the total is the services' sum.
func TestMetricsDurationKnownLengths(t *testing.T) {
	web, db := &pool.Pool{Logger: quiet}, &pool.Pool{Logger: quiet}
	m, err := admin.NewServiceMetrics([]admin.Service{{Name: "web", Registry: web}, {Name: "db", Registry: db}})
	if err != nil {
		t.Fatal(err)
	}
	base := opsAdmin(t, &admin.API{Registry: web, Logger: quiet, Metrics: m})
	webBe, dbBe := durBackendOf(t, web, "127.0.0.1:7001"), durBackendOf(t, db, "127.0.0.1:7002")

	lengths := []time.Duration{30 * time.Millisecond, 30 * time.Millisecond, 3 * time.Second, 2 * time.Hour}
	start := time.Now()
	for _, d := range lengths {
		durConnection(m.ForService("web"), webBe, start.Add(-d))
	}
	durConnection(m.ForService("db"), dbBe, start.Add(-40*time.Millisecond))
	slack := time.Since(start) // how much longer than its length each connection can have been

	fams := opsScrape(t, base)
	web1 := durHistogram(t, fams, durBackend, map[string]string{"service": "web", "backend": "127.0.0.1:7001"})
	svc := durHistogram(t, fams, durService, map[string]string{"service": "web"})
	if slack < 20*time.Millisecond { // 30 ms stays in its bucket unless the calls took 20 ms
		// 30 ms is in (0.025, 0.05], 3 s in (2.5, 5], 2 h above every bound; a backend's
		// buckets are coarser: 30 ms in (0.01, 0.1], 3 s in (1, 10].
		durBuckets(t, "web service", svc, map[float64]uint64{0.025: 0, 0.05: 2, 2.5: 2, 5: 3, 3600: 3, math.Inf(1): 4})
		durBuckets(t, "web backend", web1, map[float64]uint64{0.01: 0, 0.1: 2, 1: 2, 10: 3, 3600: 3, math.Inf(1): 4})
	}
	var sum time.Duration
	for _, d := range lengths {
		sum += d
	}
	durSum(t, "web backend", web1, sum, sum+4*slack)
	durSum(t, "web service", svc, sum, sum+4*slack)
	durOneIn(t, "db backend", durHistogram(t, fams, durBackend, map[string]string{"service": "db"}), 40*time.Millisecond, 40*time.Millisecond+slack)
	total := durHistogram(t, fams, durTotal, nil)
	if total.GetSampleCount() != 5 {
		t.Errorf("total count %d, want 5 (4 web, 1 db)", total.GetSampleCount())
	}
	durSum(t, "total", total, sum+40*time.Millisecond, sum+40*time.Millisecond+5*slack)
}

// TestMetricsDurationRemovedBackend: a forgotten backend's histogram disappears from /metrics;
// its connections stay counted in its service's and the total.
func TestMetricsDurationRemovedBackend(t *testing.T) {
	p := &pool.Pool{Logger: quiet}
	m, err := admin.NewMetrics(p)
	if err != nil {
		t.Fatal(err)
	}
	base := opsAdmin(t, &admin.API{Registry: p, Logger: quiet, Metrics: m})
	addr, err := pool.ParseAddress("127.0.0.1:7003")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Register(addr, 1); err != nil {
		t.Fatal(err)
	}
	be, err := p.Acquire(netip.Addr{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	durConnection(m, be, time.Now().Add(-time.Second))
	if err := p.Release(be); err != nil {
		t.Fatal(err)
	}
	if got := opsValue(opsScrape(t, base), durBackend, opsBackend(addr)); got != 1 {
		t.Fatalf("backend's count %v before it is removed, want 1", got)
	}
	if err := p.Deregister(addr.Key()); err != nil {
		t.Fatal(err)
	}
	opsEventually(t, "the removed backend forgotten", func() bool { return p.Len() == 0 })
	fams := opsScrape(t, base)
	if got := opsValue(fams, durBackend, opsBackend(addr)); got != -1 {
		t.Errorf("a forgotten backend's histogram still exposed (count %v)", got)
	}
	if got := opsValue(fams, durService, nil); got != 1 {
		t.Errorf("service count %v after the backend went, want 1", got)
	}
	if got := opsValue(fams, durTotal, nil); got != 1 {
		t.Errorf("total count %v after the backend went, want 1", got)
	}
}

// TestMetricsObserverAllocatesNothing: with metrics on, the observer's whole per-connection
// path (Opened, bytes both ways, Closed, Flush) allocates nothing, for both observers a
// Server may be given. The backend's series exist after its first connection.
func TestMetricsObserverAllocatesNothing(t *testing.T) {
	p := &pool.Pool{Logger: quiet}
	m, err := admin.NewMetrics(p)
	if err != nil {
		t.Fatal(err)
	}
	be := durBackendOf(t, p, "127.0.0.1:7004")
	for _, tc := range []struct {
		name string
		obs  listener.Observer
	}{
		{"Metrics", m},
		{"ForService", m.ForService("")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &listener.ConnInfo{Backend: be, Start: time.Now()}
			durConnection(tc.obs, be, c.Start) // creates the backend's series
			if n := testing.AllocsPerRun(1000, func() { durConnectionInfo(tc.obs, c) }); n != 0 {
				t.Fatalf("%v allocations per connection, want 0", n)
			}
		})
	}
}

// durConnection is one connection's events, as the data path calls them.
func durConnection(obs listener.Observer, be *pool.Backend, start time.Time) {
	durConnectionInfo(obs, &listener.ConnInfo{Backend: be, Start: start})
}

func durConnectionInfo(obs listener.Observer, c *listener.ConnInfo) {
	meter := obs.Opened(c)
	meter.Moved(true, 100)
	meter.Moved(false, 200)
	obs.Closed(c, listener.Traffic{Up: 100, Down: 200})
	meter.Flush()
}

// durBackendOf registers addr in p as its only static backend and returns it.
func durBackendOf(t *testing.T, p *pool.Pool, addr string) *pool.Backend {
	t.Helper()
	a, err := pool.ParseAddress(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.RegisterStatic(a, 1); err != nil {
		t.Fatal(err)
	}
	be, err := p.Acquire(netip.Addr{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Release(be) })
	return be
}

// durHistogram is a series' histogram, after checking that its buckets are whole: cumulative
// counts that never go down, and a +Inf bucket, if listed, equal to _count.
func durHistogram(t *testing.T, fams opsFamilies, name string, labels map[string]string) *dto.Histogram {
	t.Helper()
	f := fams[name]
	if f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("%s: no histogram family", name)
	}
	for _, s := range f.GetMetric() {
		if !opsLabelsMatch(s, labels) {
			continue
		}
		h := s.GetHistogram()
		var prev uint64
		for _, b := range h.GetBucket() {
			if b.GetCumulativeCount() < prev {
				t.Errorf("%s%v: le=%v counts %d, less than the bucket below", name, labels, b.GetUpperBound(), b.GetCumulativeCount())
			}
			prev = b.GetCumulativeCount()
			if math.IsInf(b.GetUpperBound(), 1) && prev != h.GetSampleCount() {
				t.Errorf("%s%v: +Inf bucket %d, _count %d", name, labels, prev, h.GetSampleCount())
			}
		}
		if prev > h.GetSampleCount() {
			t.Errorf("%s%v: buckets count %d, more than _count %d", name, labels, prev, h.GetSampleCount())
		}
		bounds := 19 // the total's and the services'
		if name == durBackend {
			bounds = 8
		}
		if len(h.GetBucket()) < bounds {
			t.Errorf("%s%v: %d buckets, want %d bounds", name, labels, len(h.GetBucket()), bounds)
		}
		return h
	}
	t.Fatalf("%s%v: no series", name, labels)
	return nil
}

// durOneIn checks a histogram of one observation known to be between lo and hi: its bucket
// overlaps [lo, hi] and _sum is within it.
func durOneIn(t *testing.T, what string, h *dto.Histogram, lo, hi time.Duration) {
	t.Helper()
	if h.GetSampleCount() != 1 {
		t.Fatalf("%s: count %d, want 1", what, h.GetSampleCount())
	}
	below := 0.0 // the bound of the bucket under the observation's
	for _, b := range h.GetBucket() {
		if b.GetCumulativeCount() == 0 {
			below = b.GetUpperBound()
			continue
		}
		if b.GetUpperBound() < lo.Seconds() || below >= hi.Seconds() {
			t.Errorf("%s: observed in (%v, %v], but it lasted between %v and %v", what, below, b.GetUpperBound(), lo, hi)
		}
		break
	}
	durSum(t, what, h, lo, hi)
}

// durBuckets checks the cumulative counts of the bounds named in want; each must be listed.
func durBuckets(t *testing.T, what string, h *dto.Histogram, want map[float64]uint64) {
	t.Helper()
	seen := 0
	for _, b := range h.GetBucket() {
		if w, ok := want[b.GetUpperBound()]; ok {
			seen++
			if b.GetCumulativeCount() != w {
				t.Errorf("%s le=%v: %d, want %d", what, b.GetUpperBound(), b.GetCumulativeCount(), w)
			}
		}
	}
	if n := len(want) - 1; seen < n { // +Inf may be implicit
		t.Errorf("%s: %d of the bounds %v listed", what, seen, want)
	}
}

func durSum(t *testing.T, what string, h *dto.Histogram, lo, hi time.Duration) {
	t.Helper()
	const ulp = 1e-9 // the sum is kept in nanoseconds
	if s := h.GetSampleSum(); s < lo.Seconds()-ulp || s > hi.Seconds()+ulp {
		t.Errorf("%s: _sum %v s, want between %v and %v", what, s, lo, hi)
	}
}

// TestMetricsDurationNoService: with no service yet, the total is an empty histogram.
func TestMetricsDurationNoService(t *testing.T) {
	m, err := admin.NewServiceMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	fams := opsScrape(t, opsAdmin(t, &admin.API{Registry: &pool.Pool{Logger: quiet}, Logger: quiet, Metrics: m}))
	if h := durHistogram(t, fams, durTotal, nil); h.GetSampleCount() != 0 {
		t.Errorf("total count %d with no service, want 0", h.GetSampleCount())
	}
}
