package admin_test

// Helpers for the metrics and status page tests. Their names start with "ops" so they cannot
// collide with other test files of this package.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/internal/testbed"
	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// opsEventually polls cond until it holds or a generous deadline passes.
func opsEventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testbed.Eventually(t, 20*time.Second, what, cond)
}

// opsEcho starts a TCP echo server on loopback and returns its address. It echoes until the
// client half-closes, then half-closes back. Everything it started ends at cleanup.
func opsEcho(t testing.TB) pool.Address {
	t.Helper()
	be := testbed.Serve(t, func(c net.Conn) error {
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
		return nil
	})
	return opsAddress(t, be.Addr())
}

// opsDeadAddress is a loopback address with nothing listening.
func opsDeadAddress(t testing.TB) pool.Address {
	t.Helper()
	return opsAddress(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(testbed.FreePort(t))))
}

// opsAddress is hostport as a backend address.
func opsAddress(t testing.TB, hostport string) pool.Address {
	t.Helper()
	a, err := pool.ParseAddress(hostport)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// opsProxy runs a listener.Server over p with obs on loopback; it is shut down at cleanup.
func opsProxy(t testing.TB, p *pool.Pool, obs listener.Observer) (string, *listener.Server) {
	t.Helper()
	return opsServiceProxy(t, "", p, obs)
}

// opsServiceProxy is opsProxy for the Server of a named service.
func opsServiceProxy(t testing.TB, service string, p *pool.Pool, obs listener.Observer) (string, *listener.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &listener.Server{Service: service, Picker: p, Observer: obs, Logger: quiet, ConnectTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, listener.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), srv
}

// opsHold opens a connection through the proxy and waits until a byte has made the round
// trip, so the connection is counted on its backend. It is closed at cleanup at the latest.
func opsHold(t testing.TB, proxy string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte{'x'}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("round trip through %s: %v", proxy, err)
	}
	return c.(*net.TCPConn)
}

// opsAdmin serves api's handler over real HTTP on loopback.
func opsAdmin(t testing.TB, api *admin.API) string {
	t.Helper()
	ts := httptest.NewServer(api.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

func opsGet(t testing.TB, url string) (*http.Response, []byte) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}

// opsFamilies is a parsed scrape, by metric name.
type opsFamilies = map[string]*dto.MetricFamily

// opsScrape reads GET /metrics and parses it as the Prometheus text format.
func opsScrape(t testing.TB, base string) map[string]*dto.MetricFamily {
	t.Helper()
	res, body := opsGet(t, base+"/metrics")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s: %s", res.Status, body)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics: Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// opsValue is the value of the series of family name whose labels include want, or -1 when
// there is none. Counters, gauges and untyped series give their value; summaries and
// histograms their count.
func opsValue(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	for _, m := range f.GetMetric() {
		if !opsLabelsMatch(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Summary != nil:
			return float64(m.Summary.GetSampleCount())
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	return -1
}

func opsLabelsMatch(m *dto.Metric, want map[string]string) bool {
	have := map[string]string{}
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// opsStatus is the part of /upstream/status the tests read.
type opsStatus struct {
	Servers []struct {
		Host      string  `json:"host"`
		Port      int     `json:"port"`
		ConnCount int64   `json:"conn_count"`
		Total     uint64  `json:"total_conns"`
		BytesIn   *uint64 `json:"bytes_in"`
		BytesOut  *uint64 `json:"bytes_out"`
		State     string  `json:"state"`
	} `json:"servers"`
	Total int `json:"total"`
}

func opsReadStatus(t testing.TB, base string) (opsStatus, map[string]json.RawMessage) {
	t.Helper()
	res, body := opsGet(t, base+"/upstream/status")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /upstream/status: %s", res.Status)
	}
	var st opsStatus
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	return st, raw
}
