package admin_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/pool"
)

var quiet = slog.New(slog.DiscardHandler)

func newAdmin(t *testing.T, trusted ...string) (*httptest.Server, *pool.Pool) {
	t.Helper()
	p := &pool.Pool{Logger: quiet}
	api := &admin.API{Registry: p, Logger: quiet}
	for _, s := range trusted {
		api.TrustedProxies = append(api.TrustedProxies, netip.MustParsePrefix(s))
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return srv, p
}

type reply struct {
	code int
	ct   string
	body map[string]any
}

func call(t *testing.T, method, u string, hdr http.Header, form url.Values) reply {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := reply{code: resp.StatusCode, ct: resp.Header.Get("Content-Type")}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &r.body); err != nil {
		t.Fatalf("%s %s: body %q is not JSON: %v", method, u, raw, err)
	}
	return r
}

func get(t *testing.T, u string) reply { return call(t, "GET", u, nil, nil) }

func TestSeedRegistrationWithAndWithoutHost(t *testing.T) {
	srv, p := newAdmin(t)
	r := get(t, srv.URL+"/upstream/add?port=8080")
	if r.code != 200 || r.body["success"] != true || r.body["server"] != "127.0.0.1:8080" {
		t.Fatalf("add without host: %d %v, want the caller's own address", r.code, r.body)
	}
	r = get(t, srv.URL+"/upstream/add?host=10.0.0.7&port=9000&weight=3")
	if r.code != 200 || r.body["server"] != "10.0.0.7:9000" {
		t.Fatalf("add with host: %d %v", r.code, r.body)
	}
	if r.ct != "application/json" {
		t.Errorf("Content-Type %q", r.ct)
	}
	r = call(t, "POST", srv.URL+"/upstream/add", nil, url.Values{"host": {"::1"}, "port": {"7000"}})
	if r.code != 200 || r.body["server"] != "[::1]:7000" {
		t.Fatalf("POST form add of IPv6: %d %v", r.code, r.body)
	}
	if p.Len() != 3 {
		t.Fatalf("registry has %d backends, want 3", p.Len())
	}
	// A heartbeat refreshes without duplicating.
	get(t, srv.URL+"/upstream/add?port=8080")
	if p.Len() != 3 {
		t.Fatalf("heartbeat added a backend: %d", p.Len())
	}
}

func TestStatusFields(t *testing.T) {
	srv, p := newAdmin(t)
	get(t, srv.URL+"/upstream/add?host=10.0.0.2&port=80&weight=2")
	get(t, srv.URL+"/upstream/add?host=10.0.0.1&port=80")
	b, err := p.Acquire(netip.MustParseAddr("192.0.2.1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(b)
	r := get(t, srv.URL+"/upstream/status")
	if r.code != 200 || r.ct != "application/json" {
		t.Fatalf("status: %d %q", r.code, r.ct)
	}
	if r.body["total"] != 2.0 {
		t.Fatalf("total = %v, want 2", r.body["total"])
	}
	if _, ok := r.body["timestamp"].(float64); !ok {
		t.Fatalf("timestamp %v is not a number", r.body["timestamp"])
	}
	servers := r.body["servers"].([]any)
	first := servers[0].(map[string]any)
	if first["host"] != "10.0.0.1" {
		t.Fatalf("servers not sorted by key: first is %v", first["host"])
	}
	want := []string{"conn_count", "created_time", "host", "last_heartbeat", "port", "state", "total_conns", "weight"}
	for _, f := range want {
		if _, ok := first[f]; !ok {
			t.Errorf("status entry lacks %q: %v", f, first)
		}
	}
	second := servers[1].(map[string]any)
	if second["weight"] != 2.0 || first["state"] != "up" || first["port"] != 80.0 {
		t.Errorf("entries: %v %v", first, second)
	}
	held := servers[0].(map[string]any)
	if b.Key() == "10.0.0.2:80" {
		held = second
	}
	if held["conn_count"] != 1.0 || held["total_conns"] != 1.0 {
		t.Errorf("held connection to %s not counted: %v", b.Key(), held)
	}
}

func TestRemove(t *testing.T) {
	srv, p := newAdmin(t)
	get(t, srv.URL+"/upstream/add?port=8080")
	r := get(t, srv.URL+"/upstream/remove?port=8080")
	if r.code != 200 || r.body["success"] != true || r.body["removed"] != "127.0.0.1:8080" {
		t.Fatalf("remove without host: %d %v", r.code, r.body)
	}
	if p.Len() != 0 {
		t.Fatalf("idle removed backend still known")
	}
	r = get(t, srv.URL+"/upstream/remove?host=10.9.9.9&port=1")
	if r.code != 404 || r.body["error"] == nil {
		t.Fatalf("remove unknown: %d %v, want 404 with error", r.code, r.body)
	}
}

func TestForwardedHeadersOnlyFromTrustedProxies(t *testing.T) {
	spoof := http.Header{"X-Forwarded-For": {"203.0.113.9"}, "X-Real-Ip": {"203.0.113.8"}}
	untrusted, _ := newAdmin(t)
	r := call(t, "GET", untrusted.URL+"/upstream/add?port=80", spoof, nil)
	if r.body["server"] != "127.0.0.1:80" {
		t.Fatalf("untrusted peer's X-Forwarded-For believed: %v", r.body)
	}
	trusted, _ := newAdmin(t, "127.0.0.0/8")
	// The client can forge the left-most entries; the right-most untrusted one is the caller.
	chain := http.Header{"X-Forwarded-For": {"198.51.100.1, 203.0.113.9"}}
	r = call(t, "GET", trusted.URL+"/upstream/add?port=80", chain, nil)
	if r.body["server"] != "203.0.113.9:80" {
		t.Fatalf("trusted proxy chain gave %v, want 203.0.113.9:80", r.body["server"])
	}
	r = call(t, "GET", trusted.URL+"/upstream/add?port=81", http.Header{"X-Real-Ip": {"203.0.113.8"}}, nil)
	if r.body["server"] != "203.0.113.8:81" {
		t.Fatalf("trusted X-Real-IP gave %v", r.body["server"])
	}
}

func TestBadInputIsRejectedWithoutChange(t *testing.T) {
	cases := []struct {
		name, path string
		code       int
	}{
		{"add no port", "/upstream/add?host=10.0.0.1", 400},
		{"add port text", "/upstream/add?port=http", 400},
		{"add port zero", "/upstream/add?port=0", 400},
		{"add port too big", "/upstream/add?port=65536", 400},
		{"add port hex", "/upstream/add?port=0x50", 400},
		{"add port signed", "/upstream/add?port=%2B80", 400},
		{"add port suffix", "/upstream/add?port=8080abc", 400},
		{"add port exponent", "/upstream/add?port=1e3", 400},
		{"add port space", "/upstream/add?port=%2080", 400},
		{"add host space", "/upstream/add?host=a%20b&port=80", 400},
		{"add host at", "/upstream/add?host=user@h&port=80", 400},
		{"add host slash", "/upstream/add?host=h/x&port=80", 400},
		{"add host with port", "/upstream/add?host=10.0.0.1:80&port=80", 400},
		{"add host leading zero", "/upstream/add?host=0177.0.0.1&port=80", 400},
		{"add host NUL", "/upstream/add?host=a%00b&port=80", 400},
		{"add host overlong", "/upstream/add?host=" + strings.Repeat("a", 254) + "&port=80", 400},
		{"add weight zero", "/upstream/add?port=80&weight=0", 400},
		{"add weight big", "/upstream/add?port=80&weight=257", 400},
		{"add weight text", "/upstream/add?port=80&weight=x", 400},
		{"add bad escape", "/upstream/add?port=80&host=%zz", 400},
		{"remove no port", "/upstream/remove?host=10.0.0.1", 400},
		{"remove bad host", "/upstream/remove?host=a..b&port=80", 400},
		{"remove bad port", "/upstream/remove?port=-1", 400},
		{"remove bad escape", "/upstream/remove?port=%zz", 400},
		{"unknown path", "/upstream/nothing", 404},
	}
	srv, _ := newAdmin(t)
	get(t, srv.URL+"/upstream/add?host=10.1.1.1&port=1")
	before := get(t, srv.URL+"/upstream/status").body["servers"]
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := get(t, srv.URL+tc.path)
			if r.code != tc.code || r.body["error"] == nil || r.ct != "application/json" {
				t.Fatalf("%s: %d %v (%s), want %d with an error", tc.path, r.code, r.body, r.ct, tc.code)
			}
			after := get(t, srv.URL+"/upstream/status").body["servers"]
			if !reflect.DeepEqual(before, after) {
				t.Fatalf("registry changed by a rejected request:\n%v\n%v", before, after)
			}
		})
	}
}

func TestUnknownParametersIgnoredAndMethods(t *testing.T) {
	srv, _ := newAdmin(t)
	if r := get(t, srv.URL+"/upstream/add?port=80&color=blue"); r.code != 200 {
		t.Fatalf("unknown parameter: %d %v", r.code, r.body)
	}
	if r := call(t, "DELETE", srv.URL+"/upstream/add?port=80", nil, nil); r.code != 405 {
		t.Fatalf("DELETE: %d, want 405", r.code)
	}
	if r := get(t, srv.URL+"/healthz"); r.code != 200 {
		t.Fatalf("healthz: %d", r.code)
	}
}

func TestOversizedBodyIs413(t *testing.T) {
	srv, p := newAdmin(t)
	big := url.Values{"port": {"80"}, "pad": {strings.Repeat("x", 70<<10)}}
	r := call(t, "POST", srv.URL+"/upstream/add", nil, big)
	if r.code != 413 || p.Len() != 0 {
		t.Fatalf("70 KiB body: %d, %d backends; want 413 and none", r.code, p.Len())
	}
}
