package admin_test

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

var _ listener.SNIObserver = (*admin.Metrics)(nil)

// TestSNIMetrics: the SNI routers' decisions and per-client refusals are counted under the
// names and labels the operator's dashboards use, and declared at 0.
func TestSNIMetrics(t *testing.T) {
	m, err := admin.NewServiceMetrics([]admin.Service{{Name: "api", Registry: &pool.Pool{}}, {Name: "web", Registry: &pool.Pool{}}})
	if err != nil {
		t.Fatal(err)
	}
	m.DeclareSNI(":443", []string{"api"})
	m.DeclareClientBounds("web")
	m.SNIRouted(":443", "api", false)
	m.SNIRouted(":443", "api", false)
	m.SNIRouted(":443", "web", true)
	m.SNIRefused(":443", "malformed")
	m.ClientRefused("web", "conns")
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`fulcrum_sni_routed_total{service="api"} 2`,
		`fulcrum_sni_default_total{listen=":443"} 1`,
		`fulcrum_sni_refused_total{listen=":443",reason="malformed"} 1`,
		`fulcrum_sni_refused_total{listen=":443",reason="no_default"} 0`,
		`fulcrum_sni_refused_total{listen=":443",reason="timeout"} 0`,
		`fulcrum_sni_refused_total{listen=":443",reason="too_large"} 0`,
		`fulcrum_client_refused_total{reason="conns",service="web"} 1`,
		`fulcrum_client_refused_total{reason="acl",service="web"} 0`,
		`fulcrum_client_refused_total{reason="rate",service="web"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestStatusServicesSNI: /upstream/status's services list each service's patterns as "sni",
// [] for a service without.
func TestStatusServicesSNI(t *testing.T) {
	api := &admin.API{Services: []admin.Service{
		{Name: "api", Listen: []string{":443"}, SNI: []string{"api.example.com", "*.api.example.com"}, Registry: &pool.Pool{}},
		{Name: "web", Listen: []string{":443"}, Registry: &pool.Pool{}},
	}}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	_, raw := opsReadStatus(t, srv.URL)
	var services []struct {
		Name string          `json:"name"`
		SNI  json.RawMessage `json:"sni"`
	}
	if err := json.Unmarshal(raw["services"], &services); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range services {
		got[s.Name] = string(s.SNI)
	}
	if got["api"] != `["api.example.com","*.api.example.com"]` || got["web"] != `[]` {
		t.Errorf("services sni: %v", got)
	}
}

// TestStatusPageShowsSNI: the status page's script shows each service's patterns.
func TestStatusPageShowsSNI(t *testing.T) {
	base := opsAdmin(t, &admin.API{Registry: &pool.Pool{Logger: quiet}, Logger: quiet})
	res, body := opsGet(t, base+"/ui/app.js")
	if res.StatusCode != 200 || !strings.Contains(string(body), "v.sni.join") || !strings.Contains(string(body), "routed by TLS server name") {
		t.Errorf("GET /ui/app.js: %s; the page does not show the services' sni patterns", res.Status)
	}
}
