package admin_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

func svcLabels(service string, a pool.Address) map[string]string {
	return map[string]string{"service": service, "backend": a.Key()}
}

func svcOnly(service string) map[string]string { return map[string]string{"service": service} }

// TestServiceMetricsLabels runs four services through real proxies and scrapes /metrics: db
// and web share a backend address and have a series each for it; cache has only a dead
// backend; empty has none. db and cache hear Metrics itself (the service comes from
// ConnInfo.Service, and a dial failure is found by its key), web and empty ForService.
func TestServiceMetricsLabels(t *testing.T) {
	shared, dead := opsEcho(t), opsDeadAddress(t)
	pools := svcPools("db", "web", "cache", "empty")
	for _, reg := range []struct {
		svc string
		a   pool.Address
	}{{"db", shared}, {"web", shared}, {"cache", dead}} {
		if err := pools[reg.svc].RegisterStatic(reg.a, 1); err != nil {
			t.Fatal(err)
		}
	}
	var svcs []admin.Service
	for _, name := range []string{"db", "web", "cache", "empty"} {
		svcs = append(svcs, admin.Service{Name: name, Registry: pools[name]})
	}
	m, err := admin.NewServiceMetrics(svcs)
	if err != nil {
		t.Fatal(err)
	}
	base := opsAdmin(t, &admin.API{Logger: quiet, Services: svcs, Metrics: m})
	fams := opsScrape(t, base)
	for _, name := range []string{"db", "web", "cache", "empty"} { // declared before any event
		for _, f := range []string{"fulcrum_service_connections_routed_total", "fulcrum_service_dial_failures_total", "fulcrum_service_heartbeats_total"} {
			if got := opsValue(fams, f, svcOnly(name)); got != 0 {
				t.Errorf("before any event %s{service=%q} = %v, want 0", f, name, got)
			}
		}
		reason := map[string]string{"service": name, "reason": admin.ReasonNoBackend}
		if got := opsValue(fams, "fulcrum_service_connections_rejected_total", reason); got != 0 {
			t.Errorf("before any event rejected%v = %v, want 0", reason, got)
		}
	}

	obs := func(o listener.Observer) listener.Observer { return listener.Observers{listener.BackendBytes{}, o} }
	dbProxy, _ := opsServiceProxy(t, "db", pools["db"], obs(m))
	webProxy, _ := opsServiceProxy(t, "web", pools["web"], obs(m.ForService("web")))
	cacheProxy, _ := opsServiceProxy(t, "cache", pools["cache"], obs(m))
	emptyProxy, _ := opsServiceProxy(t, "empty", pools["empty"], obs(m.ForService("empty")))
	opsHold(t, dbProxy)
	opsHold(t, webProxy)
	opsHold(t, webProxy)
	opsRefused(t, cacheProxy)
	opsRefused(t, emptyProxy)
	for range 2 { // a registration, then a heartbeat of web's second backend
		if res, body := opsGet(t, base+"/upstream/add?service=web&host=192.0.2.1&port=80"); res.StatusCode != http.StatusOK {
			t.Fatalf("add: %s %s", res.Status, body)
		}
	}

	var f opsFamilies
	// Bytes are counted when a copy step returns, which may be after the echo reached the
	// client: wait for them too.
	opsEventually(t, "the dial failure, the rejection and the echoed bytes counted", func() bool {
		f = opsScrape(t, base)
		return opsValue(f, "fulcrum_dial_failures_total", nil) == 1 &&
			opsValue(f, "fulcrum_service_connections_rejected_total", map[string]string{"service": "empty", "reason": admin.ReasonNoBackend}) == 1 &&
			opsValue(f, "fulcrum_service_bytes_in_total", svcOnly("web")) == 2 &&
			opsValue(f, "fulcrum_service_bytes_out_total", svcOnly("db")) == 1
	})
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"fulcrum_backend_connections_routed_total", svcLabels("db", shared), 1},
		{"fulcrum_backend_connections_routed_total", svcLabels("web", shared), 2},
		{"fulcrum_backend_connections_active", svcLabels("db", shared), 1},
		{"fulcrum_backend_connections_active", svcLabels("web", shared), 2},
		{"fulcrum_backend_bytes_in_total", svcLabels("web", shared), 2},
		{"fulcrum_backend_dial_failures_total", svcLabels("cache", dead), 1},
		{"fulcrum_backend_heartbeats_total", map[string]string{"service": "web", "backend": "192.0.2.1:80"}, 1},
		{"fulcrum_service_connections_routed_total", svcOnly("db"), 1},
		{"fulcrum_service_connections_routed_total", svcOnly("web"), 2},
		{"fulcrum_service_connections_routed_total", svcOnly("cache"), 0},
		{"fulcrum_service_connections_active", svcOnly("db"), 1},
		{"fulcrum_service_connections_active", svcOnly("web"), 2},
		{"fulcrum_service_connections_active", svcOnly("empty"), 0},
		{"fulcrum_service_backends", svcOnly("web"), 2},
		{"fulcrum_service_backends", svcOnly("cache"), 1},
		{"fulcrum_service_backends", svcOnly("empty"), 0},
		{"fulcrum_service_bytes_in_total", svcOnly("web"), 2},
		{"fulcrum_service_bytes_out_total", svcOnly("db"), 1},
		{"fulcrum_service_dial_failures_total", svcOnly("cache"), 1},
		{"fulcrum_service_dial_failures_total", svcOnly("db"), 0},
		{"fulcrum_service_heartbeats_total", svcOnly("web"), 1},
		{"fulcrum_service_heartbeats_total", svcOnly("db"), 0},
		{"fulcrum_connections_active", nil, 3},
		{"fulcrum_connections_routed_total", nil, 3},
		{"fulcrum_registry_backends", nil, 4},
		{"fulcrum_heartbeats_total", nil, 1},
	} {
		if got := opsValue(f, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	svcCheckLabelNames(t, f)
}

// svcCheckLabelNames: every backend series carries service and backend, every service series
// service, and no service series is missing its service.
func svcCheckLabelNames(t *testing.T, f opsFamilies) {
	t.Helper()
	for name, fam := range f {
		var want []string
		switch {
		case strings.HasPrefix(name, "fulcrum_backend_"):
			want = []string{"service", "backend"}
		case strings.HasPrefix(name, "fulcrum_service_"):
			want = []string{"service"}
		default:
			continue
		}
		for _, m := range fam.GetMetric() {
			for _, l := range want {
				if v := opsLabel(m.GetLabel(), l); v == "" {
					t.Errorf("%s series %v has no %s label", name, m.GetLabel(), l)
				}
			}
		}
	}
}

func opsLabel[L interface {
	GetName() string
	GetValue() string
}](labels []L, name string) string {
	for _, l := range labels {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestMetricsOneServiceIsDefault: Metrics built by NewMetrics, observing a Server with no
// Service, labels everything "default".
func TestMetricsOneServiceIsDefault(t *testing.T) {
	a := opsEcho(t)
	rig := newOpsMetricsRig(t, a)
	opsHold(t, rig.proxy)
	if res, body := opsGet(t, rig.admin+"/upstream/add?host=127.0.0.1&port="+strconv.Itoa(a.Port)); res.StatusCode != http.StatusOK {
		t.Fatalf("add: %s %s", res.Status, body)
	}
	fams := rig.scrape(t)
	rig.expect(t, fams, "fulcrum_backend_connections_routed_total", svcLabels("default", a), 1)
	rig.expect(t, fams, "fulcrum_backend_heartbeats_total", svcLabels("default", a), 1)
	rig.expect(t, fams, "fulcrum_service_connections_routed_total", svcOnly("default"), 1)
	rig.expect(t, fams, "fulcrum_service_connections_active", svcOnly("default"), 1)
	rig.expect(t, fams, "fulcrum_service_backends", svcOnly("default"), 1)
	svcCheckLabelNames(t, fams)
}

func TestNewServiceMetricsRefusesBadNames(t *testing.T) {
	p := &pool.Pool{Logger: quiet}
	for name, svcs := range map[string][]admin.Service{
		"malformed": {{Name: "Web", Registry: p}},
		"empty":     {{Name: "", Registry: p}},
		"twice":     {{Name: "web", Registry: p}, {Name: "web", Registry: p}},
	} {
		if _, err := admin.NewServiceMetrics(svcs); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
