package admin_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// opsMetricsRig is a pool, a proxy observed by Metrics and BackendBytes, and the admin API.
type opsMetricsRig struct {
	pool  *pool.Pool
	proxy string
	admin string
	m     *admin.Metrics
}

func newOpsMetricsRig(t *testing.T, backends ...pool.Address) *opsMetricsRig {
	t.Helper()
	p := &pool.Pool{Logger: quiet}
	for _, a := range backends {
		if err := p.RegisterStatic(a, 1); err != nil {
			t.Fatal(err)
		}
	}
	m, err := admin.NewMetrics(p)
	if err != nil {
		t.Fatal(err)
	}
	proxy, _ := opsProxy(t, p, listener.Observers{listener.BackendBytes{}, m})
	api := &admin.API{Registry: p, Logger: quiet, Metrics: m}
	return &opsMetricsRig{pool: p, proxy: proxy, admin: opsAdmin(t, api), m: m}
}

// opsBackend is the label set of one backend's series.
func opsBackend(a pool.Address) map[string]string { return map[string]string{"backend": a.Key()} }

func TestMetricsFollowConnections(t *testing.T) {
	a, b := opsEcho(t), opsEcho(t)
	rig := newOpsMetricsRig(t, a, b)

	fams := rig.scrape(t)
	for name, want := range map[string]float64{
		"fulcrum_connections_active":          0,
		"fulcrum_connections_routed_total":    0,
		"fulcrum_bytes_in_total":              0,
		"fulcrum_bytes_out_total":             0,
		"fulcrum_dial_failures_total":         0,
		"fulcrum_heartbeats_total":            0,
		"fulcrum_registry_backends":           2,
		"fulcrum_connection_duration_seconds": 0,
	} {
		if got := opsValue(fams, name, nil); got != want {
			t.Errorf("before any connection: %s = %v, want %v", name, got, want)
		}
	}

	conns := make([]*net.TCPConn, 4)
	for i := range conns {
		conns[i] = opsHold(t, rig.proxy)
	}
	fams = rig.scrape(t)
	rig.expect(t, fams, "fulcrum_connections_active", nil, 4)
	rig.expect(t, fams, "fulcrum_connections_routed_total", nil, 4)
	for _, be := range []pool.Address{a, b} { // least-connections: 2 and 2
		rig.expect(t, fams, "fulcrum_backend_connections_active", opsBackend(be), 2)
		rig.expect(t, fams, "fulcrum_backend_connections_routed_total", opsBackend(be), 2)
	}

	// A whole 1 MiB chunk is counted while the connection is still open.
	const mib = 1 << 20
	payload := make([]byte, mib)
	rand.Read(payload)
	if _, err := conns[0].Write(payload); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conns[0], payload); err != nil {
		t.Fatal(err)
	}
	rig.eventually(t, "1 MiB counted each way while open", func(f opsFamilies) bool {
		return opsValue(f, "fulcrum_bytes_in_total", nil) >= mib && opsValue(f, "fulcrum_bytes_out_total", nil) >= mib
	})

	for _, c := range conns {
		c.Close()
	}
	rig.eventually(t, "every connection closed", func(f opsFamilies) bool {
		return opsValue(f, "fulcrum_connections_active", nil) == 0 &&
			opsValue(f, "fulcrum_connection_duration_seconds", nil) == 4 &&
			opsValue(f, "fulcrum_backend_connection_duration_seconds", opsBackend(a)) == 2 &&
			opsValue(f, "fulcrum_backend_connection_duration_seconds", opsBackend(b)) == 2
	})
	fams = rig.scrape(t)
	want := float64(4 + mib) // one byte per held connection, and the 1 MiB
	rig.expect(t, fams, "fulcrum_bytes_in_total", nil, want)
	rig.expect(t, fams, "fulcrum_bytes_out_total", nil, want)
	var perBackend float64
	for _, be := range []pool.Address{a, b} {
		rig.expect(t, fams, "fulcrum_backend_connections_active", opsBackend(be), 0)
		perBackend += opsValue(fams, "fulcrum_backend_bytes_in_total", opsBackend(be))
	}
	if perBackend != want {
		t.Errorf("per-backend bytes in add up to %v, want %v", perBackend, want)
	}
}

func TestMetricsStatusBytesMatch(t *testing.T) {
	a := opsEcho(t)
	rig := newOpsMetricsRig(t, a)
	c := opsHold(t, rig.proxy)
	msg := bytes.Repeat([]byte("fulcrum"), 1000)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, len(msg))); err != nil {
		t.Fatal(err)
	}
	c.Close()
	want := uint64(1 + len(msg))
	opsEventually(t, "status bytes_in and bytes_out", func() bool {
		st, _ := opsReadStatus(t, rig.admin)
		s := st.Servers[0]
		return s.BytesIn != nil && *s.BytesIn == want && s.BytesOut != nil && *s.BytesOut == want
	})
	// The metrics meter batches and flushes when the connection has ended, which may be a
	// moment after the status counters (updated per step) are complete.
	rig.eventually(t, "metrics bytes", func(f opsFamilies) bool {
		return opsValue(f, "fulcrum_backend_bytes_in_total", opsBackend(a)) == float64(want) &&
			opsValue(f, "fulcrum_backend_bytes_out_total", opsBackend(a)) == float64(want)
	})
}

func TestMetricsRejectedAndDialFailures(t *testing.T) {
	dead := opsDeadAddress(t)
	rig := newOpsMetricsRig(t) // no backend yet: the first client is rejected
	opsRefused(t, rig.proxy)
	rig.eventually(t, "a no_backend rejection", func(f opsFamilies) bool {
		return opsValue(f, "fulcrum_connections_rejected_total", map[string]string{"reason": admin.ReasonNoBackend}) == 1
	})

	if err := rig.pool.RegisterStatic(dead, 1); err != nil {
		t.Fatal(err)
	}
	opsRefused(t, rig.proxy)
	rig.eventually(t, "a dial failure", func(f opsFamilies) bool {
		return opsValue(f, "fulcrum_dial_failures_total", nil) == 1 &&
			opsValue(f, "fulcrum_backend_dial_failures_total", opsBackend(dead)) == 1
	})
	fams := rig.scrape(t)
	var other float64
	for _, m := range fams["fulcrum_connections_rejected_total"].GetMetric() {
		if !opsLabelsMatch(m, map[string]string{"reason": admin.ReasonNoBackend}) {
			other += m.GetCounter().GetValue()
		}
	}
	if other != 1 {
		t.Errorf("rejections for a reason other than no_backend = %v, want 1 (every dial failed)", other)
	}
	rig.expect(t, fams, "fulcrum_connections_routed_total", nil, 0)
}

// opsRefused connects through the proxy and expects to be closed without a reply.
func opsRefused(t *testing.T, proxy string) {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes from a proxy with no reachable backend", n)
	}
}

func TestMetricsHeartbeatsAndRegistry(t *testing.T) {
	rig := newOpsMetricsRig(t)
	hb := opsEcho(t)
	add := rig.admin + "/upstream/add?host=127.0.0.1&port=" + strconv.Itoa(hb.Port)
	for range 3 { // one registration, then two heartbeats
		if res, body := opsGet(t, add); res.StatusCode != http.StatusOK {
			t.Fatalf("add: %s: %s", res.Status, body)
		}
	}
	fams := rig.scrape(t)
	rig.expect(t, fams, "fulcrum_heartbeats_total", nil, 2)
	rig.expect(t, fams, "fulcrum_backend_heartbeats_total", opsBackend(hb), 2)
	rig.expect(t, fams, "fulcrum_registry_backends", nil, 1)

	// A backend removed while a connection runs is listed until the connection ends; then its
	// active gauge drops to 0 and the registry shrinks.
	c := opsHold(t, rig.proxy)
	rig.expect(t, rig.scrape(t), "fulcrum_backend_connections_active", opsBackend(hb), 1)
	if res, body := opsGet(t, rig.admin+"/upstream/remove?host=127.0.0.1&port="+strconv.Itoa(hb.Port)); res.StatusCode != http.StatusOK {
		t.Fatalf("remove: %s: %s", res.Status, body)
	}
	rig.expect(t, rig.scrape(t), "fulcrum_registry_backends", nil, 1)
	c.Close()
	rig.eventually(t, "the removed backend forgotten", func(f opsFamilies) bool {
		return opsValue(f, "fulcrum_registry_backends", nil) == 0 &&
			opsValue(f, "fulcrum_backend_connections_active", opsBackend(hb)) == 0
	})
}

func TestMetricsOff(t *testing.T) {
	api := &admin.API{Registry: &pool.Pool{Logger: quiet}, Logger: quiet}
	res, body := opsGet(t, opsAdmin(t, api)+"/metrics")
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /metrics with metrics off: %s, want 404", res.Status)
	}
	var e map[string]string
	if err := json.Unmarshal(body, &e); err != nil || e["error"] == "" {
		t.Fatalf("GET /metrics with metrics off: body %q, want a JSON error", body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
}

func (r *opsMetricsRig) scrape(t *testing.T) opsFamilies {
	t.Helper()
	return opsScrape(t, r.admin)
}

func (r *opsMetricsRig) expect(t *testing.T, fams opsFamilies, name string, labels map[string]string, want float64) {
	t.Helper()
	if got := opsValue(fams, name, labels); got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

func (r *opsMetricsRig) eventually(t *testing.T, what string, cond func(opsFamilies) bool) {
	t.Helper()
	opsEventually(t, what, func() bool { return cond(r.scrape(t)) })
}

// TestMetricsConcurrentFirstEvents opens and closes many connections to a new backend at once:
// the sink creates a series on its first update, and no first update may be lost.
func TestMetricsConcurrentFirstEvents(t *testing.T) {
	a := opsEcho(t)
	rig := newOpsMetricsRig(t, a)
	const n = 24
	conns := make(chan *net.TCPConn, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", rig.proxy)
			if err != nil {
				t.Error(err)
				return
			}
			conns <- c.(*net.TCPConn)
		}()
	}
	wg.Wait()
	close(conns)
	opsEventually(t, "every connection counted", func() bool { return rig.pool.Snapshot()[0].Active == n })
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Write([]byte{'x'})
			c.CloseWrite()
			io.Copy(io.Discard, c)
			c.Close()
		}()
	}
	wg.Wait()
	rig.eventually(t, "every connection closed", func(f opsFamilies) bool {
		return opsValue(f, "fulcrum_connection_duration_seconds", nil) == n
	})
	fams := rig.scrape(t)
	rig.expect(t, fams, "fulcrum_backend_connections_routed_total", opsBackend(a), n)
	rig.expect(t, fams, "fulcrum_backend_connection_duration_seconds", opsBackend(a), n)
	rig.expect(t, fams, "fulcrum_backend_bytes_in_total", opsBackend(a), n)
	rig.expect(t, fams, "fulcrum_backend_bytes_out_total", opsBackend(a), n)
}

// TestMetricsRejectedReasons: a reason is the innermost error's text, and the label's values
// are capped so that varied error texts cannot grow the exposition without bound.
func TestMetricsRejectedReasons(t *testing.T) {
	rig := newOpsMetricsRig(t)
	errOdd := errors.New("listener: something new")
	for range 3 {
		rig.m.Rejected(netip.AddrPort{}, fmt.Errorf("client 127.0.0.1:4242: %w", errOdd))
	}
	rig.m.Rejected(netip.AddrPort{}, fmt.Errorf("accept: %w", pool.ErrNoBackend))
	rig.m.Rejected(netip.AddrPort{}, fmt.Errorf("%w: %w", pool.ErrFull, context.DeadlineExceeded))
	rig.m.Rejected(netip.AddrPort{}, fmt.Errorf("client: %w", listener.ErrProxyHeaderUntrusted))
	for i := range 40 {
		rig.m.Rejected(netip.AddrPort{}, fmt.Errorf("odd failure %d", i))
	}
	fams := rig.scrape(t)
	rig.expect(t, fams, "fulcrum_connections_rejected_total", map[string]string{"reason": errOdd.Error()}, 3)
	for _, r := range []string{admin.ReasonNoBackend, admin.ReasonLimit, admin.ReasonProxyHeader} {
		rig.expect(t, fams, "fulcrum_connections_rejected_total", map[string]string{"reason": r}, 1)
	}
	series := fams["fulcrum_connections_rejected_total"].GetMetric()
	var sum float64
	for _, m := range series {
		sum += m.GetCounter().GetValue()
	}
	if sum != 46 {
		t.Errorf("rejections add up to %v, want 46", sum)
	}
	if len(series) > 17 {
		t.Errorf("%d reason values, want at most 16 and other", len(series))
	}
	other := opsValue(fams, "fulcrum_connections_rejected_total", map[string]string{"reason": "other"})
	if other != 40-12 { // 3 known reasons, errOdd and 12 odd failures have their own value
		t.Errorf("reason=other counts %v, want 28", other)
	}
}

// TestMetricsStartNoGoroutine: Metrics runs nothing in the background (no runtime sampler, no
// sink cleanup loop): every goroutine a scrape starts has ended when the scrape has.
func TestMetricsStartNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	p := &pool.Pool{Logger: quiet}
	m, err := admin.NewMetrics(p)
	if err != nil {
		t.Fatal(err)
	}
	m.Heartbeat("", "127.0.0.1:1")
	m.Rejected(netip.AddrPort{}, pool.ErrNoBackend)
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: %d", rec.Code)
	}
	opsEventually(t, "no goroutine left running", func() bool { return runtime.NumGoroutine() <= before })
}
