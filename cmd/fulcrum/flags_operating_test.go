package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

func TestOperatingFlags(t *testing.T) {
	c, err := serveContext(t, "--proxy-protocol", "v1", "--accept-proxy-protocol", "10.1.2.3/8", "--accept-proxy-protocol", "::1/128", "--proxy-header-timeout", "250ms", "--access-log", "-")
	if err != nil {
		t.Fatal(err)
	}
	oc, err := parseOperating(c)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	if oc.proxy.Send != 1 || len(oc.proxy.Accept) != 2 || oc.proxy.Accept[0] != want[0] || oc.proxy.Accept[1] != want[1] ||
		oc.proxy.HeaderTimeout != 250*time.Millisecond || oc.accessLog != "-" {
		t.Errorf("parsed %+v", oc)
	}
	t.Setenv("FULCRUM_PROXY_PROTOCOL", "v2")
	c, _ = serveContext(t)
	if oc, err := parseOperating(c); err != nil || oc.proxy.Send != 2 {
		t.Errorf("FULCRUM_PROXY_PROTOCOL=v2: %+v, %v", oc, err)
	}
}

func TestOperatingFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--proxy-protocol", "v3"}, "--proxy-protocol"},
		{[]string{"--accept-proxy-protocol", "10.0.0.1/33"}, "--accept-proxy-protocol"}, // a bare address is its /32: TestCIDRFlagsTakeBareAddresses
		{[]string{"--proxy-header-timeout", "0s"}, "--proxy-header-timeout"},
	} {
		c, err := serveContext(t, tc.args...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseOperating(c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %s", tc.args, err, tc.want)
		}
	}
}

// The access log joins the other observers (metrics), appends to an existing file, and is
// closed by closeLog; the server gets the PROXY protocol settings.
func TestAccessLogObserver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	os.WriteFile(path, []byte("{\"earlier\":true}\n"), 0o600)
	p := &pool.Pool{Logger: quiet}
	cfg := &config{metrics: true, log: quiet, policy: pool.LeastConn, operating: operatingConfig{accessLog: path, proxy: listener.ProxyProtocol{Send: 2}}}
	svcs := []*servicePool{{cfg: defaultService(cfg), pool: p}}
	obs, err := newObservers(cfg, svcs)
	if err != nil {
		t.Fatal(err)
	}
	list := obs.forService("web")
	srv := newServer(cfg, defaultService(cfg), p, list, newShared(cfg))
	if _, ok := list[2].(*listener.AccessLog); len(list) != 3 || obs.metrics == nil || !ok || srv.ProxyProtocol.Send != 2 {
		t.Fatalf("observers %#v, proxy %+v", list, srv.ProxyProtocol)
	}
	list[2].Rejected(netip.MustParseAddrPort("192.0.2.1:5"), os.ErrClosed)
	obs.closeLog()
	b, _ := os.ReadFile(path)
	if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) != 2 || lines[0] != `{"earlier":true}` || !strings.Contains(lines[1], `"service":"web","client":"192.0.2.1:5"`) {
		t.Errorf("access log file:\n%s", b)
	}
	cfg.operating.accessLog = filepath.Join(path, "not-a-dir", "x")
	if _, err := newObservers(cfg, svcs); err == nil || !strings.Contains(err.Error(), "--access-log") {
		t.Errorf("unopenable access log: %v", err)
	}
}
