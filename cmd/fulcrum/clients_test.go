package main

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"
)

func TestClientBoundFlagsAndConfigFile(t *testing.T) {
	path := writeConfig(t, `
max-conns-per-client: 10
client-rate: 20/40
deny-client: 10.9.9.9
services:
  - name: db
    listen: 127.0.0.1:7001
    allow-client: ["10.0.0.0/8", "2001:db8::1"]
  - name: web
    listen: 127.0.0.1:7002
    max-conns-per-client: 3
    deny-client: []
`)
	cfg, err := parseServeArgs(t, "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	def, db, web := cfg.services[0].traffic.clients, serviceNamed(cfg, "db").traffic.clients, serviceNamed(cfg, "web").traffic.clients
	if def.MaxConns != 10 || def.Rate.String() != "20/40" || len(def.Deny) != 1 || def.Deny[0].String() != "10.9.9.9/32" {
		t.Errorf("top level %+v", def)
	}
	if db.MaxConns != 10 || len(db.Allow) != 2 || db.Allow[1].String() != "2001:db8::1/128" || len(db.Deny) != 1 {
		t.Errorf("db %+v", db)
	}
	if web.MaxConns != 3 || len(web.Deny) != 0 || web.Rate.String() != "20/40" {
		t.Errorf("web %+v", web)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-conns-per-client", "-1"}, "--max-conns-per-client"},
		{[]string{"--client-rate", "fast"}, "--client-rate"},
		{[]string{"--allow-client", "10.0.0.0/33"}, "--allow-client"},
		{[]string{"--deny-client", "nowhere"}, "--deny-client"},
	} {
		if _, err := parseServeArgs(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %s", tc.args, err, tc.want)
		}
	}
}

// TestMaxConnsPerClientServe: with --max-conns-per-client 10, 50 connections from one address
// get 10 served and 40 closed, counted by reason; a second address is served; status shows
// the client with its open connections; a denied address is closed without a dial.
func TestMaxConnsPerClientServe(t *testing.T) { eachPlane(t, testMaxConnsPerClientServe) }

func testMaxConnsPerClientServe(t *testing.T) {
	be := startBackend(t, func(c net.Conn) error {
		buf := make([]byte, 1)
		c.Read(buf) // hold until the client closes
		return nil
	})
	b := startBalancer(t, "--backend", be.Addr(), "--max-conns-per-client", "10", "--deny-client", "127.0.0.3")
	var conns []net.Conn
	for range 50 {
		conns = append(conns, dialFromAddr(t, "127.0.0.1", b.listen))
	}
	eventually(t, 10*time.Second, "10 served", func() bool { return be.Open() == 10 })
	eventually(t, 10*time.Second, "40 refused, counted", func() bool {
		m, _, _ := adminGet(b.admn, "/metrics")
		return strings.Contains(string(m), `fulcrum_client_refused_total{reason="conns",service="default"} 40`)
	})
	dialFromAddr(t, "127.0.0.2", b.listen)
	eventually(t, 10*time.Second, "the second address served", func() bool { return be.Open() == 11 })
	denied := dialFromAddr(t, "127.0.0.3", b.listen)
	denied.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := denied.Read(make([]byte, 1)); err == nil {
		t.Error("denied client not closed")
	}
	if be.Accepted() != 11 {
		t.Errorf("backend accepted %d, want 11 (no dial for refused clients)", be.Accepted())
	}
	body, _, err := adminGet(b.admn, "/upstream/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Services []struct {
			Name       string `json:"name"`
			TopClients []struct {
				Client string `json:"client"`
				Open   int    `json:"open"`
			} `json:"top_clients"`
		} `json:"services"`
	}
	if err := json.Unmarshal(body, &st); err != nil || len(st.Services) != 1 {
		t.Fatalf("status %v: %s", err, body)
	}
	top := st.Services[0].TopClients
	if len(top) != 2 || top[0].Client != "127.0.0.1/32" || top[0].Open != 10 || top[1].Open != 1 {
		t.Errorf("top_clients %+v", top)
	}
	for _, c := range conns {
		c.Close()
	}
}

// dialFromAddr connects to addr from the loopback address from.
func dialFromAddr(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot connect from %s (needs the whole 127.0.0.0/8 on loopback): %v", from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
