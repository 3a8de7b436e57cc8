package admin_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// svcPools makes one pool per name.
func svcPools(names ...string) map[string]*pool.Pool {
	pools := map[string]*pool.Pool{}
	for _, n := range names {
		pools[n] = &pool.Pool{TTL: time.Minute, Logger: quiet}
	}
	return pools
}

func svcState(p *pool.Pool, key string) (pool.State, int) {
	st, ok := p.Lookup(key)
	if !ok {
		return "", 0
	}
	return st.State, st.Weight
}

// TestServicesRouteOverHTTP: add, drain, undrain and remove reach the registry of the service
// they name, and the same host:port lives in two services independently.
func TestServicesRouteOverHTTP(t *testing.T) {
	pools := svcPools("db", "web")
	api := &admin.API{Logger: quiet, Services: []admin.Service{
		{Name: "db", Registry: pools["db"]},
		{Name: "web", Registry: pools["web"]},
	}}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	const key = "10.0.0.1:80"
	steps := []struct {
		name     string
		method   string
		path     string
		form     url.Values
		code     int
		db, web  pool.State // the backend's state in each service afterwards ("" = unknown)
		dbW, wbW int        // and its weight
	}{
		{"add to db", "GET", "/upstream/add?service=db&host=10.0.0.1&port=80&weight=3", nil, 200, pool.StateUp, "", 3, 0},
		{"add to web by form", "POST", "/upstream/add", url.Values{"service": {"web"}, "host": {"10.0.0.1"}, "port": {"80"}, "weight": {"5"}}, 200, pool.StateUp, pool.StateUp, 3, 5},
		{"drain in db", "GET", "/upstream/drain?service=db&host=10.0.0.1&port=80", nil, 200, pool.StateDraining, pool.StateUp, 3, 5},
		{"heartbeat in web keeps db draining", "GET", "/upstream/add?service=web&host=10.0.0.1&port=80", nil, 200, pool.StateDraining, pool.StateUp, 3, 5},
		{"undrain in db", "POST", "/upstream/undrain", url.Values{"service": {"db"}, "host": {"10.0.0.1"}, "port": {"80"}}, 200, pool.StateUp, pool.StateUp, 3, 5},
		{"remove from web", "GET", "/upstream/remove?service=web&host=10.0.0.1&port=80", nil, 200, pool.StateUp, "", 3, 0},
		{"no default service", "GET", "/upstream/add?host=10.0.0.2&port=80", nil, 404, pool.StateUp, "", 3, 0},
		{"remove from web again", "GET", "/upstream/remove?service=web&host=10.0.0.1&port=80", nil, 404, pool.StateUp, "", 3, 0},
		{"drain unknown service", "GET", "/upstream/drain?service=cache&host=10.0.0.1&port=80", nil, 404, pool.StateUp, "", 3, 0},
		{"malformed service", "GET", "/upstream/undrain?service=Web&host=10.0.0.1&port=80", nil, 400, pool.StateUp, "", 3, 0},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			var form url.Values
			if s.method == "POST" {
				form = s.form
			}
			r := call(t, s.method, srv.URL+s.path, nil, form)
			if r.code != s.code || r.ct != "application/json" {
				t.Fatalf("%d %s %v, want %d", r.code, r.ct, r.body, s.code)
			}
			if s.code != 200 && r.body["error"] == nil {
				t.Errorf("refusal without an error field: %v", r.body)
			}
			if st, w := svcState(pools["db"], key); st != s.db || w != s.dbW {
				t.Errorf("db: %q weight %d, want %q weight %d", st, w, s.db, s.dbW)
			}
			if st, w := svcState(pools["web"], key); st != s.web || w != s.wbW {
				t.Errorf("web: %q weight %d, want %q weight %d", st, w, s.web, s.wbW)
			}
			if pools["db"].Len()+pools["web"].Len() > 2 {
				t.Errorf("an unexpected backend was registered")
			}
		})
	}
}

// svcStatus is the part of /upstream/status the services tests read.
type svcStatus struct {
	Servers []struct {
		Service   string `json:"service"`
		Host      string `json:"host"`
		Port      int    `json:"port"`
		ConnCount int64  `json:"conn_count"`
	} `json:"servers"`
	Total    int          `json:"total"`
	Services []svcSummary `json:"services"`
}

type svcSummary struct {
	Name     string   `json:"name"`
	Listen   []string `json:"listen"`
	Balance  string   `json:"balance"`
	Backends int      `json:"backends"`
	Active   int64    `json:"active"`
}

func svcReadStatus(t *testing.T, u string) svcStatus {
	t.Helper()
	res, body := opsGet(t, u)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", u, res.Status, body)
	}
	var st svcStatus
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// entries renders a status listing as "service/host:port=active", in the order given.
func (st svcStatus) entries() []string {
	var out []string
	for _, s := range st.Servers {
		out = append(out, s.Service+"/"+s.Host+":"+strconv.Itoa(s.Port)+"="+strconv.FormatInt(s.ConnCount, 10))
	}
	return out
}

// twoServicesHeld builds services db and web: they share one backend address (shared) and web
// has one more (own). Two connections are held through db's proxy and one through web's.
func twoServicesHeld(t *testing.T) (shared, own pool.Address, pools map[string]*pool.Pool, dbProxy, webProxy string) {
	t.Helper()
	shared, own = opsEcho(t), opsEcho(t)
	pools = svcPools("db", "web")
	for _, reg := range []struct {
		svc string
		a   pool.Address
	}{{"db", shared}, {"web", shared}, {"web", own}} {
		if err := pools[reg.svc].RegisterStatic(reg.a, 1); err != nil {
			t.Fatal(err)
		}
	}
	dbProxy, _ = opsServiceProxy(t, "db", pools["db"], listener.BackendBytes{})
	webProxy, _ = opsServiceProxy(t, "web", pools["web"], listener.BackendBytes{})
	opsHold(t, dbProxy)
	opsHold(t, dbProxy)
	opsHold(t, webProxy)
	return shared, own, pools, dbProxy, webProxy
}

// TestStatusListsServices: with connections held through two services' proxies that share a
// backend address, the listing names each entry's service, sorted by service then key, the
// services list counts each service's backends and connections, and ?service= lists one.
func TestStatusListsServices(t *testing.T) {
	shared, own, pools, dbProxy, webProxy := twoServicesHeld(t)
	api := &admin.API{Logger: quiet, Services: []admin.Service{ // not in name order
		{Name: "web", Listen: []string{webProxy}, Balance: "p2c", Registry: pools["web"]},
		{Name: "db", Listen: []string{dbProxy}, Balance: "leastconn", Registry: pools["db"]},
	}}
	base := opsAdmin(t, api)

	st := svcReadStatus(t, base+"/upstream/status")
	ownEntry := "web/" + own.Host + ":" + strconv.Itoa(own.Port)
	webShared := "web/" + shared.Key()
	want := []string{"db/" + shared.Key() + "=2"}
	if shared.Key() < own.Key() {
		want = append(want, webShared+"=1", ownEntry+"=0")
	} else {
		want = append(want, ownEntry+"=0", webShared+"=1")
	}
	if !slices.Equal(st.entries(), want) || st.Total != 3 {
		t.Errorf("listing %q total %d, want %q total 3", st.entries(), st.Total, want)
	}
	wantSvcs := []svcSummary{
		{Name: "db", Listen: []string{dbProxy}, Balance: "leastconn", Backends: 1, Active: 2},
		{Name: "web", Listen: []string{webProxy}, Balance: "p2c", Backends: 2, Active: 1},
	}
	if !svcSummariesEqual(st.Services, wantSvcs) {
		t.Errorf("services %+v, want %+v", st.Services, wantSvcs)
	}

	st = svcReadStatus(t, base+"/upstream/status?service=web")
	if len(st.Servers) != 2 || st.Total != 2 || st.Servers[0].Service != "web" || st.Servers[1].Service != "web" {
		t.Errorf("?service=web lists %q, total %d", st.entries(), st.Total)
	}
	if !svcSummariesEqual(st.Services, wantSvcs[1:]) {
		t.Errorf("?service=web services %+v, want web's alone", st.Services)
	}
	for q, code := range map[string]int{"service=cache": 404, "service=Web": 400} {
		if res, body := opsGet(t, base+"/upstream/status?"+q); res.StatusCode != code {
			t.Errorf("status?%s: %s %s, want %d", q, res.Status, body, code)
		}
	}
}

func svcSummariesEqual(a, b []svcSummary) bool {
	return slices.EqualFunc(a, b, func(x, y svcSummary) bool {
		return x.Name == y.Name && slices.Equal(x.Listen, y.Listen) && x.Balance == y.Balance &&
			x.Backends == y.Backends && x.Active == y.Active
	})
}

// TestStatusOneServiceList: without Services the list holds "default", listening where the
// Overview says (nothing without one), its balance not known.
func TestStatusOneServiceList(t *testing.T) {
	a := opsEcho(t)
	p := &pool.Pool{Logger: quiet}
	if err := p.RegisterStatic(a, 1); err != nil {
		t.Fatal(err)
	}
	proxy, _ := opsProxy(t, p, nil)
	opsHold(t, proxy)
	for _, c := range []struct {
		name string
		ov   *admin.Overview
		want []string
	}{
		{"no overview", nil, []string{}},
		{"overview", &admin.Overview{Listen: []string{proxy}}, []string{proxy}},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := opsAdmin(t, &admin.API{Registry: p, Logger: quiet, Overview: c.ov})
			for _, q := range []string{"", "?service=default"} {
				st := svcReadStatus(t, base+"/upstream/status"+q)
				want := []svcSummary{{Name: "default", Listen: c.want, Backends: 1, Active: 1}}
				if !svcSummariesEqual(st.Services, want) || st.Services[0].Listen == nil {
					t.Errorf("status%s services %+v, want %+v", q, st.Services, want)
				}
				if len(st.Servers) != 1 || st.Servers[0].Service != "default" {
					t.Errorf("status%s servers %+v", q, st.Servers)
				}
			}
		})
	}
}
