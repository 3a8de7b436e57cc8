package admin

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// newServicesAPI returns an API over three services, default, db and web, each its own pool;
// set (if not nil) fills in its Security.
func newServicesAPI(t *testing.T, set func(s *Security)) (*API, map[string]*pool.Pool) {
	t.Helper()
	a, _ := newAPI(t, set)
	pools := map[string]*pool.Pool{}
	for _, name := range []string{"default", "db", "web"} {
		p := &pool.Pool{TTL: time.Minute, Logger: quiet}
		pools[name] = p
		a.Services = append(a.Services, Service{Name: name, Registry: p})
	}
	a.Registry = nil // with Services set, the API must not reach for it
	return a, pools
}

// TestServiceParameterRefused: a malformed service name is a 400 and an unknown one a 404,
// on every mutating endpoint, both with a JSON error, and neither changes any registry (check
// compares every service's backends before and after).
func TestServiceParameterRefused(t *testing.T) {
	a, pools := newServicesAPI(t, nil)
	pools["db"].Register(pool.Address{Host: "10.0.0.1", Port: 80}, 1)
	h := a.Handler()
	long := strings.Repeat("a", 64)
	for _, path := range []string{"/upstream/add", "/upstream/remove", "/upstream/drain", "/upstream/undrain"} {
		for _, c := range []struct {
			name, query string
			code        int
		}{
			{"upper case", q("service", "DB", "host", "10.0.0.1", "port", "80"), 400},
			{"slash", q("service", "db/x", "host", "10.0.0.1", "port", "80"), 400},
			{"space", q("service", "d b", "host", "10.0.0.1", "port", "80"), 400},
			{"64 characters", q("service", long, "host", "10.0.0.1", "port", "80"), 400},
			{"twice", "service=db&service=web&host=10.0.0.1&port=80", 400},
			{"twice, empty first", "service=&service=db&host=10.0.0.1&port=80", 400},
			{"unknown", q("service", "cache", "host", "10.0.0.1", "port", "80"), 404},
			{"unknown, 63 characters", q("service", long[:63], "host", "10.0.0.1", "port", "80"), 404},
		} {
			t.Run(path+"/"+c.name, func(t *testing.T) {
				reply := check(t, a, h, req{target: path + "?" + c.query}, c.code)
				if msg, _ := reply["error"].(string); !strings.Contains(msg, "service") {
					t.Errorf("error %q does not speak of the service", msg)
				}
			})
		}
	}
	t.Run("twice, query and body", func(t *testing.T) {
		check(t, a, h, req{method: "POST", target: "/upstream/add?service=db", body: q("service", "web", "host", "10.0.0.2", "port", "80")}, 400)
	})
}

// TestServiceParameterWithoutServices: an API with no Services is one service, "default": it
// may be named, and any other well-formed name is unknown.
func TestServiceParameterWithoutServices(t *testing.T) {
	a, p := newAPI(t, nil)
	h := a.Handler()
	reply := check(t, a, h, req{target: "/upstream/add?" + q("service", "default", "host", "10.0.0.1", "port", "80")}, 200)
	if reply["service"] != "default" || p.Len() != 1 {
		t.Fatalf("add to default: %v, %d backends", reply, p.Len())
	}
	check(t, a, h, req{target: "/upstream/add?" + q("service", "db", "host", "10.0.0.2", "port", "80")}, 404)
	check(t, a, h, req{target: "/upstream/drain?" + q("service", "Default", "host", "10.0.0.1", "port", "80")}, 400)
	check(t, a, h, req{target: "/upstream/remove?" + q("service", "", "host", "10.0.0.1", "port", "80")}, 200)
}

// TestServiceSecurity: every access rule holds whatever service a request names, and the rate
// limit is the client's across every service.
func TestServiceSecurity(t *testing.T) {
	const remote = "203.0.113.5:1000"
	t.Run("address-only rule", func(t *testing.T) {
		a, pools := newServicesAPI(t, nil)
		h := a.Handler()
		for _, svc := range []string{"db", "web", ""} {
			check(t, a, h, req{target: "/upstream/add?" + q("service", svc, "host", "198.51.100.7", "port", "80"), remote: remote}, 403)
		}
		check(t, a, h, req{target: "/upstream/add?" + q("service", "db", "port", "80"), remote: remote}, 200)
		if _, ok := pools["db"].Lookup("203.0.113.5:80"); !ok {
			t.Error("the caller's own address did not reach db")
		}
	})
	t.Run("backend address rules", func(t *testing.T) {
		a, _ := newServicesAPI(t, nil)
		check(t, a, a.Handler(), req{target: "/upstream/add?" + q("service", "web", "host", "224.0.0.1", "port", "80")}, 403)
	})
	t.Run("token", func(t *testing.T) {
		a, pools := newServicesAPI(t, func(s *Security) { s.Token = "t" })
		h := a.Handler()
		check(t, a, h, req{target: "/upstream/add?" + q("service", "db", "host", "10.0.0.1", "port", "80")}, 401)
		check(t, a, h, req{target: "/upstream/add?" + q("service", "nope", "host", "10.0.0.1", "port", "80")}, 401)
		check(t, a, h, req{target: "/upstream/add?" + q("service", "db", "host", "10.0.0.1", "port", "80"), remote: remote, token: "t"}, 200)
		if pools["db"].Len() != 1 {
			t.Error("a token holder's add did not reach db")
		}
	})
	t.Run("rate limit per client", func(t *testing.T) {
		a, _ := newServicesAPI(t, func(s *Security) { s.Rate, s.Burst = slow, 2 })
		h := a.Handler()
		check(t, a, h, req{target: "/upstream/add?" + q("service", "db", "host", "10.0.0.1", "port", "80")}, 200)
		check(t, a, h, req{target: "/upstream/add?" + q("service", "web", "host", "10.0.0.1", "port", "80")}, 200)
		check(t, a, h, req{target: "/upstream/add?" + q("host", "10.0.0.1", "port", "80")}, 429)
		check(t, a, h, req{target: "/upstream/drain?" + q("service", "db", "host", "10.0.0.1", "port", "80")}, 429)
	})
}

// TestRemoveForceClosesOnItsService: force=1 resets connections through the named service's
// CloseBackend only; a service without one just removes.
func TestRemoveForceClosesOnItsService(t *testing.T) {
	a, pools := newServicesAPI(t, nil)
	closed := map[string][]string{}
	for i := range a.Services {
		if name := a.Services[i].Name; name != "web" {
			a.Services[i].CloseBackend = func(key string) int { closed[name] = append(closed[name], key); return 3 }
		}
	}
	for _, p := range pools {
		p.Register(pool.Address{Host: "10.0.0.1", Port: 80}, 1)
	}
	h := a.Handler()
	reply := check(t, a, h, req{target: "/upstream/remove?" + q("service", "db", "host", "10.0.0.1", "port", "80", "force", "1")}, 200)
	if reply["closed"] != float64(3) || reply["service"] != "db" {
		t.Errorf("remove db: %v", reply)
	}
	reply = check(t, a, h, req{target: "/upstream/remove?" + q("service", "web", "host", "10.0.0.1", "port", "80", "force", "1")}, 200)
	if _, ok := reply["closed"]; ok {
		t.Errorf("remove web (no CloseBackend) reports closed: %v", reply)
	}
	if len(closed) != 1 || len(closed["db"]) != 1 || closed["db"][0] != "10.0.0.1:80" {
		t.Errorf("CloseBackend calls %v, want db's for 10.0.0.1:80 only", closed)
	}
	if st, _ := pools["default"].Lookup("10.0.0.1:80"); st.State != pool.StateUp {
		t.Errorf("default's backend is %q after removes in other services", st.State)
	}
}

// TestStatusServiceParameter: ?service= filters the listing; a bad name is refused like a
// mutating request's.
func TestStatusServiceParameter(t *testing.T) {
	a, _ := newServicesAPI(t, nil)
	h := a.Handler()
	for _, c := range []struct {
		query string
		code  int
	}{
		{"service=db", 200},
		{"service=", 200},
		{"service=DB", 400},
		{"service=cache", 404},
		{"service=db&service=web", 400},
		{"host=a&host=b", 200}, // other parameters mean nothing to status, as before
	} {
		w := req{target: "/upstream/status?" + c.query}.do(t, h)
		if w.Code != c.code {
			t.Errorf("status?%s: %d %s, want %d", c.query, w.Code, w.Body, c.code)
		}
		if c.code != 200 && !strings.Contains(w.Body.String(), `"error"`) {
			t.Errorf("status?%s: %s has no error field", c.query, w.Body)
		}
	}
	if w := (req{method: http.MethodPost, target: "/upstream/status", body: "service=web"}).do(t, h); w.Code != 200 {
		t.Errorf("POST status: %d", w.Code)
	}
}
