package admin

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/testbed"
	"github.com/fulcrumlb/fulcrum/pool"
)

// quiet is the discard logger of every test in this package.
var quiet = slog.New(slog.DiscardHandler)

// newAPI returns an API over a fresh pool whose logs are discarded; set (if not nil) fills in
// its Security. No test reaches a real resolver or the real interface list.
func newAPI(t *testing.T, set func(s *Security)) (*API, *pool.Pool) {
	t.Helper()
	p := &pool.Pool{TTL: time.Minute, Logger: quiet}
	a := &API{Registry: p, Logger: quiet}
	if set != nil {
		set(&a.Security)
	}
	if a.Security.LookupHost == nil {
		a.Security.LookupHost = noDNS
	}
	if a.Security.Interfaces == nil {
		a.Security.Interfaces = fakeInterfaces
	}
	return a, p
}

// noDNS answers every name as not found, so that no test reaches a real resolver.
func noDNS(context.Context, string) ([]netip.Addr, error) {
	return nil, &net.DNSError{Err: "no such host", IsNotFound: true}
}

// fakeInterfaces is a machine with a loopback and one LAN address.
func fakeInterfaces() ([]netip.Prefix, error) {
	return []netip.Prefix{
		netip.MustParsePrefix("127.0.0.1/8"),
		netip.MustParsePrefix("192.0.2.10/24"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("2001:db8:5::10/64"),
	}, nil
}

// req describes one admin request made straight to the handler.
type req struct {
	method string // "" means GET
	target string // path and query
	remote string // "" means 127.0.0.1:40000
	token  string // "" means no Authorization header
	header map[string]string
	body   string // a form body (POST)
}

func (r req) do(t *testing.T, h http.Handler) *httptest.ResponseRecorder {
	t.Helper()
	method := r.method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr := httptest.NewRequest(method, "http://admin"+r.target, body)
	if r.body != "" {
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	hr.RemoteAddr = r.remote
	if hr.RemoteAddr == "" {
		hr.RemoteAddr = "127.0.0.1:40000"
	}
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, hr)
	return w
}

// registry is the status reply without its timestamp: what must not change when a request is
// refused.
func registry(t *testing.T, a *API) string {
	t.Helper()
	w := httptest.NewRecorder()
	a.status(w, httptest.NewRequest(http.MethodGet, "/upstream/status", nil))
	var reply statusReply
	if err := json.Unmarshal(w.Body.Bytes(), &reply); err != nil {
		t.Fatalf("status: %v", err)
	}
	reply.Timestamp = 0
	b, _ := json.Marshal(reply)
	return string(b)
}

// check makes the request, wants code, and, when code is not 200, wants the registry to be
// exactly as it was. It returns the decoded reply.
func check(t *testing.T, a *API, h http.Handler, r req, code int) map[string]any {
	t.Helper()
	before := registry(t, a)
	w := r.do(t, h)
	if w.Code != code {
		t.Fatalf("%s %s from %s: got %d %s, want %d", r.method, r.target, r.remote, w.Code, w.Body, code)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if code != http.StatusOK {
		if after := registry(t, a); after != before {
			t.Fatalf("refused request changed the registry:\nbefore %s\nafter  %s", before, after)
		}
	}
	var reply map[string]any
	json.Unmarshal(w.Body.Bytes(), &reply)
	return reply
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testbed.Eventually(t, 10*time.Second, what, cond)
}

func q(params ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(params); i += 2 {
		v.Add(params[i], params[i+1])
	}
	return v.Encode()
}
