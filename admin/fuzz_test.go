package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"

	"github.com/fulcrumlb/fulcrum/pool"
)

// FuzzParseTarget drives add and remove with arbitrary queries, peers and X-Forwarded-For
// values. Whatever the input: no panic, only the documented status codes, a refused request
// leaves the registry as it was, and what does get registered obeys every rule.
//
//	go test -run='^$' -fuzz='^FuzzParseTarget$' -fuzztime=5s ./admin
func FuzzParseTarget(f *testing.F) {
	seeds := []struct {
		remove        bool
		query, remote string
		xff           string
	}{
		{false, "port=8080", "203.0.113.5:1", ""},
		{false, "host=198.51.100.7&port=80&weight=3", "127.0.0.1:1", ""},
		{false, "host=198.51.100.7&port=80", "203.0.113.5:1", ""},
		{false, "host=0177.0.0.1&port=80", "127.0.0.1:1", ""},
		{false, "host=%zz&port=80", "127.0.0.1:1", ""},
		{false, "host=fe80::1%25eth0&port=80", "127.0.0.1:1", ""},
		{false, "host=169.254.169.254&port=80", "127.0.0.1:1", ""},
		{false, "host=svc.test&port=80", "127.0.0.1:1", ""},
		{false, "host=rebind.test&port=80", "127.0.0.1:1", ""},
		{false, "port=8000&host=127.0.0.1", "127.0.0.1:1", ""},
		{false, "port=80", "10.0.0.2:1", "127.0.0.1, 198.51.100.7"},
		{false, "port=80", "10.0.0.2:1", "garbage"},
		{false, "port=+1", "127.0.0.1:1", ""},
		{false, "port=80&port=81", "127.0.0.1:1", ""},
		{true, "host=198.51.100.7&port=80", "203.0.113.5:1", ""},
		{true, "port=80", "[2001:db8::1]:1", ""},
		{false, "service=default&host=198.51.100.7&port=80", "127.0.0.1:1", ""},
		{false, "service=db&port=80", "127.0.0.1:1", ""},
		{false, "service=Db%2F&port=80", "127.0.0.1:1", ""},
		{true, "service=default&service=default&host=198.51.100.7&port=80", "127.0.0.1:1", ""},
	}
	for _, s := range seeds {
		f.Add(s.remove, s.query, s.remote, s.xff)
	}
	f.Fuzz(func(t *testing.T, remove bool, query, remote, xff string) {
		a, p := newAPI(t, func(s *Security) {
			s.Self = []netip.AddrPort{netip.MustParseAddrPort("[::]:8000")}
			s.LookupHost = fuzzDNS
		})
		a.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		p.Register(pool.Address{Host: "198.51.100.7", Port: 80, IP: netip.MustParseAddr("198.51.100.7")}, 1)
		path := "/upstream/add"
		if remove {
			path = "/upstream/remove"
		}
		r := httptest.NewRequest(http.MethodGet, "http://admin"+path, nil)
		r.URL.RawQuery = query
		r.RemoteAddr = remote
		if xff != "" {
			r.Header["X-Forwarded-For"] = []string{xff}
		}
		before := registry(t, a)
		w := httptest.NewRecorder()
		a.Handler().ServeHTTP(w, r)
		if !slices.Contains([]int{200, 400, 403, 404, 413, 429, 503}, w.Code) {
			t.Fatalf("status %d %s", w.Code, w.Body)
		}
		if w.Code != 200 {
			if registry(t, a) != before {
				t.Fatalf("refused (%d) request changed the registry", w.Code)
			}
			return
		}
		for _, s := range p.Snapshot() {
			checkRegistered(t, a, s.Address)
		}
	})
}

// checkRegistered asserts what every registered backend must satisfy.
func checkRegistered(t *testing.T, a *API, addr pool.Address) {
	t.Helper()
	if h, err := pool.ParseHost(addr.Host); err != nil || h != addr.Host {
		t.Fatalf("registered host %q is not canonical (%q, %v)", addr.Host, h, err)
	}
	if addr.Port < 1 || addr.Port > 65535 {
		t.Fatalf("registered port %d", addr.Port)
	}
	if !addr.IP.IsValid() {
		t.Fatalf("backend %s registered without an address", addr.Key())
	}
	if err := a.Security.checkBackend(addr.IP, addr.Port); err != nil {
		t.Fatalf("registered a refused backend: %v", err)
	}
}

// fuzzDNS is a fixed table: a few good names, one that resolves into a refused network.
func fuzzDNS(ctx context.Context, host string) ([]netip.Addr, error) {
	switch host {
	case "svc.test":
		return []netip.Addr{netip.MustParseAddr("198.51.100.9")}, nil
	case "rebind.test":
		return []netip.Addr{netip.MustParseAddr("198.51.100.9"), netip.MustParseAddr("169.254.169.254")}, nil
	}
	return noDNS(ctx, host)
}
