package admin_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// opsColumns is the status table's header row, as the issue names it.
var opsColumns = []string{"Backend", "State", "Active", "Total", "Bytes in", "Bytes out", "Heartbeat age", "Weight"}

func TestStatusPageServed(t *testing.T) {
	base := opsAdmin(t, &admin.API{Registry: &pool.Pool{Logger: quiet}, Logger: quiet})
	res, body := opsGet(t, base+"/")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %s", res.Status)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("GET /: Content-Type %q, want text/html", ct)
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("GET /: Content-Security-Policy %q does not keep the page to its own origin", csp)
	}
	html := string(body)
	if !strings.Contains(html, "<table") {
		t.Fatal("GET /: no <table>")
	}
	var header []string
	for _, m := range regexp.MustCompile(`<th>([^<]*)</th>`).FindAllStringSubmatch(html, -1) {
		header = append(header, m[1])
	}
	if !slices.Equal(header, opsColumns) {
		t.Errorf("table header %q, want %q", header, opsColumns)
	}
	// Every file the page loads is served, from this host.
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(html, -1) {
		ref := m[1]
		if strings.Contains(ref, ":") || strings.HasPrefix(ref, "/") {
			t.Errorf("GET /: reference %q is not relative to the admin listener", ref)
			continue
		}
		if res, _ := opsGet(t, base+"/"+ref); res.StatusCode != http.StatusOK {
			t.Errorf("GET /%s: %s", ref, res.Status)
		}
	}
}

// TestStatusPageNamesNoOtherHost reads the page's sources as embedded: no URL with a scheme or a
// protocol-relative host, no CSS import or url(), so the page works offline and leaks nothing.
func TestStatusPageNamesNoOtherHost(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("ui", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no ui files: %v", err)
	}
	outside := regexp.MustCompile(`(?i)[a-z][a-z0-9+.-]*://|//[a-z0-9]|@import|url\(|xmlns`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if loc := outside.FindIndex(b); loc != nil {
			t.Errorf("%s names another host or loads a resource: %q", f, b[max(0, loc[0]-20):min(len(b), loc[1]+20)])
		}
	}
}

func TestStatusPageOtherPaths(t *testing.T) {
	base := opsAdmin(t, &admin.API{Registry: &pool.Pool{Logger: quiet}, Logger: quiet})
	for _, path := range []string{"/ui/", "/ui/nope.js", "/nope", "/index.html", "/ui/../api.go"} {
		res, body := opsGet(t, base+path)
		var e map[string]string
		if res.StatusCode != http.StatusNotFound || json.Unmarshal(body, &e) != nil || e["error"] == "" {
			t.Errorf("GET %s: %s %q, want 404 with a JSON error", path, res.Status, body)
		}
	}
	res, err := http.Post(base+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %s, want 405", res.Status)
	}
}

func TestStatusOverviewFields(t *testing.T) {
	a := opsEcho(t)
	p := &pool.Pool{Logger: quiet}
	if err := p.RegisterStatic(a, 1); err != nil {
		t.Fatal(err)
	}
	proxy, srv := opsProxy(t, p, listener.BackendBytes{})
	opsHold(t, proxy).Close()

	// Without an Overview, the reply has exactly the original top-level fields, the list of
	// services and the build's version and revision, which are always there.
	_, raw := opsReadStatus(t, opsAdmin(t, &admin.API{Registry: p, Logger: quiet}))
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range raw {
			if !yield(k) {
				return
			}
		}
	})
	if want := []string{"revision", "servers", "services", "timestamp", "total", "version"}; !slices.Equal(keys, want) {
		t.Errorf("status keys without an Overview: %q, want %q", keys, want)
	}

	ov := &admin.Overview{Listen: []string{proxy}, Admin: "127.0.0.1:1", Started: time.Now().Add(-time.Minute), Stats: srv.Stats()}
	base := opsAdmin(t, &admin.API{Registry: p, Logger: quiet, Overview: ov})
	opsEventually(t, "the connection counted", func() bool {
		st, _ := opsReadStatus(t, base)
		return st.Servers[0].ConnCount == 0 && *st.Servers[0].BytesIn == 1
	})
	_, raw = opsReadStatus(t, base)
	var f struct {
		Listen   []string `json:"listen"`
		Admin    string   `json:"admin"`
		Uptime   float64  `json:"uptime_seconds"`
		Accepted *uint64  `json:"connections_accepted"`
		Rejected *uint64  `json:"connections_rejected"`
	}
	b, _ := json.Marshal(raw)
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.Listen, []string{proxy}) || f.Admin != "127.0.0.1:1" {
		t.Errorf("listen %q admin %q", f.Listen, f.Admin)
	}
	if f.Uptime < 60 || f.Uptime > 3600 {
		t.Errorf("uptime_seconds %v, want about a minute", f.Uptime)
	}
	if f.Accepted == nil || *f.Accepted != 1 || f.Rejected == nil || *f.Rejected != 0 {
		t.Errorf("connections_accepted %v, connections_rejected %v; want 1 and 0", f.Accepted, f.Rejected)
	}
}
