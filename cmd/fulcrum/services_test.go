package main

import (
	"encoding/json"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// parseServeArgs runs serve's flag parsing and parseConfig on args.
func parseServeArgs(t *testing.T, args ...string) (*config, error) {
	t.Helper()
	c, err := serveContext(t, args...)
	if err != nil {
		return nil, err
	}
	return parseConfig(c)
}

func serviceNamed(cfg *config, name string) *serviceConfig {
	i := slices.IndexFunc(cfg.services, func(s serviceConfig) bool { return s.name == name })
	if i < 0 {
		return nil
	}
	return &cfg.services[i]
}

func TestServiceFlags(t *testing.T) {
	cfg, err := parseServeArgs(t, "--listen", "127.0.0.1:7000", "--retries", "4",
		"--service", "db=127.0.0.1:7001", "--service", "db=127.0.0.1:7002", "--service", "cache=127.0.0.1:7003",
		"--backend", "10.0.0.1:80", "--backend", "db=10.0.0.2:5432", "--backend", "db=10.0.0.3:5432")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.services) != 3 || cfg.services[0].name != pool.DefaultService {
		t.Fatalf("services %+v", cfg.services)
	}
	def, db, cache := cfg.services[0], serviceNamed(cfg, "db"), serviceNamed(cfg, "cache")
	if !slices.Equal(def.listen, []string{"127.0.0.1:7000"}) || len(def.backends) != 1 || def.backends[0].Key() != "10.0.0.1:80" {
		t.Errorf("default %+v", def)
	}
	if !slices.Equal(db.listen, []string{"127.0.0.1:7001", "127.0.0.1:7002"}) || len(db.backends) != 2 || db.backends[1].Key() != "10.0.0.3:5432" {
		t.Errorf("db %+v", db)
	}
	if len(cache.backends) != 0 || cache.traffic.retries != 4 || cache.policy.Name() != "leastconn" {
		t.Errorf("cache does not take the top-level options: %+v", cache)
	}
}

func TestServiceFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--service", "db"}, "NAME=ADDR"},
		{[]string{"--service", "DB=127.0.0.1:1"}, "service name"},
		{[]string{"--service", strings.Repeat("x", 64) + "=127.0.0.1:1"}, "service name"},
		{[]string{"--service", "default=127.0.0.1:1"}, "--listen"},
		{[]string{"--backend", "nosuch=10.0.0.1:80"}, `no service named "nosuch"`},
		{[]string{"--service", "db=127.0.0.1:1", "--backend", "db=10.0.0.1"}, "--backend"},
	} {
		if _, err := parseServeArgs(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

func TestServicesFromConfigFile(t *testing.T) {
	path := writeConfig(t, `
listen: 127.0.0.1:7000
connect-timeout: 3s
retries: 1
services:
  - name: db
    listen: [127.0.0.1:7001, 127.0.0.1:7002]
    balance: p2c
    backends: [10.0.0.2:5432]
    connect-timeout: 1s
    max-conns-per-backend: 10
    idle-timeout: 5m
    proxy-protocol: v2
    accept-proxy-protocol: 10.1.0.0/16
    health-fall: 5
  - name: web
    listen: 127.0.0.1:7003
`)
	cfg, err := parseServeArgs(t, "--config", path, "--service", "cache=127.0.0.1:7004")
	if err != nil {
		t.Fatal(err)
	}
	db, web := serviceNamed(cfg, "db"), serviceNamed(cfg, "web")
	if db == nil || web == nil || serviceNamed(cfg, "cache") == nil || len(cfg.services) != 4 {
		t.Fatalf("services %+v", cfg.services)
	}
	tc := db.traffic
	if len(db.listen) != 2 || db.policy.Name() != "p2c" || len(db.backends) != 1 || tc.connectTimeout != time.Second ||
		tc.retries != 1 || tc.maxPerConn != 10 || tc.idleTimeout != 5*time.Minute || tc.proxy.Send != 2 ||
		len(tc.proxy.Accept) != 1 || tc.healthFall != 5 || tc.healthRise != 2 {
		t.Errorf("db %+v", db)
	}
	if !slices.Equal(web.listen, []string{"127.0.0.1:7003"}) || web.traffic.connectTimeout != 3*time.Second || web.policy.Name() != "leastconn" {
		t.Errorf("web does not take the top-level options: %+v", web)
	}
}

func TestServicesConfigFileErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"services:\n  - name: db\n", "listen"},
		{"services:\n  - name: Db\n    listen: 127.0.0.1:1\n", "service name"},
		{"services:\n  - name: db\n    listen: 127.0.0.1:1\n    colour: red\n", "colour"},
		{"services:\n  - name: db\n    listen: 127.0.0.1:1\n  - name: db\n    listen: 127.0.0.1:2\n", "defined twice"},
		{"services:\n  - name: default\n    listen: 127.0.0.1:1\n", "defined twice"},
		{"services:\n  - name: db\n    listen: 127.0.0.1:1\n    balance: random\n", "balance"},
		{"services:\n  - name: db\n    listen: 127.0.0.1:1\n    retries: -1\n", "--retries"},
		{"services:\n  - name: db\n    listen: 127.0.0.1:1\n    connect-timeout: soon\n", "services"},
		{"services: db\n", "services"},
	} {
		_, err := parseServeArgs(t, "--config", writeConfig(t, tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.yaml, err, tc.want)
		}
	}
}

// nameHandler answers every connection with name and closes.
func nameHandler(name string) func(net.Conn) error {
	return func(c net.Conn) error {
		defer c.Close()
		_, err := io.WriteString(c, name)
		return err
	}
}

func readAll(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestServicesRouteApart: each service's port reaches only its own backends.
func TestServicesRouteApart(t *testing.T) {
	web, db := startBackend(t, nameHandler("web")), startBackend(t, nameHandler("db"))
	dbAddr := resFreeAddr(t)
	listen, _ := resServe(t, "--backend", web.Addr(), "--service", "db="+dbAddr, "--backend", "db="+db.Addr(), "--health-interval", "0")
	for range 3 {
		if got := readAll(t, listen); got != "web" {
			t.Fatalf("default service reached %q", got)
		}
		if got := readAll(t, dbAddr); got != "db" {
			t.Fatalf("db service reached %q", got)
		}
	}
}

// TestStateCarriesServices: a state document holds every service's backends and gives each
// back to its own service; a service no longer configured is dropped, not misplaced.
func TestStateCarriesServices(t *testing.T) {
	mk := func(names ...string) []*servicePool {
		var out []*servicePool
		for _, n := range names {
			out = append(out, &servicePool{cfg: serviceConfig{name: n}, pool: &pool.Pool{Logger: quiet}})
		}
		return out
	}
	from := mk(pool.DefaultService, "db", "gone")
	a := pool.Address{Host: "10.0.0.1", Port: 80}
	for _, s := range from {
		s.pool.Register(a, 1) // the same address in every service
	}
	from[1].pool.Register(pool.Address{Host: "10.0.0.2", Port: 5432}, 3)
	data, err := encodeState(from)
	if err != nil {
		t.Fatal(err)
	}
	to := mk(pool.DefaultService, "db")
	n, err := importState(to, data, quiet)
	if err != nil || n != 3 {
		t.Fatalf("imported %d, %v; want 3", n, err)
	}
	if to[0].pool.Len() != 1 || to[1].pool.Len() != 2 {
		t.Fatalf("default has %d, db %d backends", to[0].pool.Len(), to[1].pool.Len())
	}
	if st, ok := to[1].pool.Lookup("10.0.0.2:5432"); !ok || st.Weight != 3 {
		t.Fatalf("db backend %+v", st)
	}
	if _, err := decodeState([]byte(`{"version":1,"backends":[],"services":{"Bad Name":[]}}`)); err == nil {
		t.Fatal("a malformed service name in a state document was accepted")
	}
	// One bad record in one service refuses the document before any service is filled.
	bad := []byte(`{"version":1,"backends":[{"host":"10.0.0.9","port":80,"weight":1}],"services":{"db":[{"host":"10.0.0.8","port":0,"weight":1}]}}`)
	fresh := mk(pool.DefaultService, "db")
	if n, err := importState(fresh, bad, quiet); err == nil || n != 0 || fresh[0].pool.Len() != 0 {
		t.Fatalf("a document with a bad record in db: imported %d (default holds %d), %v; want none and an error", n, fresh[0].pool.Len(), err)
	}
}

// svcStatus is /upstream/status as the service tests read it.
type svcStatus struct {
	Servers []struct {
		Service    string `json:"service"`
		Host       string `json:"host"`
		Port       int    `json:"port"`
		TotalConns uint64 `json:"total_conns"`
	} `json:"servers"`
	Services []struct {
		Name     string   `json:"name"`
		Listen   []string `json:"listen"`
		Balance  string   `json:"balance"`
		Backends int      `json:"backends"`
	} `json:"services"`
}

func getStatus(t *testing.T, adm, query string) svcStatus {
	t.Helper()
	body, code, err := adminGet(adm, "/upstream/status"+query)
	if err != nil || code != 200 {
		t.Fatalf("status%s: %d %v %s", query, code, err, body)
	}
	var st svcStatus
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// serviceListen is the first listen address status gives for a service.
func serviceListen(t *testing.T, adm, name string) string {
	t.Helper()
	for _, s := range getStatus(t, adm, "").Services {
		if s.Name == name && len(s.Listen) > 0 {
			return s.Listen[0]
		}
	}
	t.Fatalf("status lists no service %s", name)
	return ""
}

func addTo(t *testing.T, adm, service, addr string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	q := url.Values{"service": {service}, "host": {host}, "port": {port}}
	if body, code, err := adminGet(adm, "/upstream/add?"+q.Encode()); err != nil || code != 200 {
		t.Fatalf("add %s to %s: %d %v %s", addr, service, code, err, body)
	}
}

// TestServicesThroughAdmin: a heartbeat joins a named service and is routed only there; the
// same address in two services is two backends; a service is never created by a heartbeat.
func TestServicesThroughAdmin(t *testing.T) {
	shared, db := startBackend(t, nameHandler("shared")), startBackend(t, nameHandler("db"))
	listen, adm := resServe(t, "--service", "db="+resFreeAddr(t), "--health-interval", "0")
	dbListen := serviceListen(t, adm, "db")
	addTo(t, adm, "db", db.Addr())
	addTo(t, adm, "db", shared.Addr())
	addTo(t, adm, pool.DefaultService, shared.Addr())
	for range 4 {
		if got := readAll(t, listen); got != "shared" {
			t.Fatalf("default service reached %q", got)
		}
	}
	seen := map[string]bool{}
	for range 4 {
		seen[readAll(t, dbListen)] = true
	}
	if !seen["db"] || !seen["shared"] || len(seen) != 2 {
		t.Fatalf("db service reached %v, want both of its backends", seen)
	}
	st := getStatus(t, adm, "?service=db")
	if len(st.Servers) != 2 || st.Servers[0].Service != "db" || st.Servers[1].Service != "db" {
		t.Fatalf("status?service=db %+v", st.Servers)
	}
	totals := map[string]uint64{}
	for _, s := range getStatus(t, adm, "").Servers {
		if net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) == shared.Addr() {
			totals[s.Service] = s.TotalConns
		}
	}
	if totals[pool.DefaultService] != 4 || totals["db"] == 0 || totals["db"] == 4 {
		t.Fatalf("the shared address counted %v: the two services' counts are not apart", totals)
	}
	for q, want := range map[string]int{"service=nosuch": 404, "service=Bad%20Name": 400} {
		if _, code, _ := adminGet(adm, "/upstream/add?"+q+"&host=127.0.0.1&port=9"); code != want {
			t.Errorf("add with %s: %d, want %d", q, code, want)
		}
	}
	if n := len(getStatus(t, adm, "").Services); n != 2 {
		t.Fatalf("%d services after a heartbeat to an unknown one, want 2", n)
	}
}

// TestServicesSurviveUpgradeAndRestart: a backend that joined a named service at run time is
// still there, and routed to, after a SIGHUP upgrade and after a restart from the state file.
func TestServicesSurviveUpgradeAndRestart(t *testing.T) {
	db := startBackend(t, nameHandler("db"))
	dir := t.TempDir()
	pidFile, state := filepath.Join(dir, "fulcrum.pid"), filepath.Join(dir, "state.json")
	args := []string{"--service", "db=127.0.0.1:0", "--pid-file", pidFile, "--state-file", state, "--health-interval", "0"}
	b := startBalancer(t, args...)
	t.Cleanup(func() { stopNewest(t, pidFile) })
	addTo(t, b.admn, "db", db.Addr())
	dbListen := serviceListen(t, b.admn, "db")
	eventually(t, 10*time.Second, "the PID file names the balancer", func() bool { return readPID(pidFile) == b.pid() })

	syscall.Kill(b.pid(), syscall.SIGHUP)
	eventually(t, 30*time.Second, "a successor", func() bool { p := readPID(pidFile); return p != 0 && p != b.pid() })
	t.Logf("upgraded from pid %d to %d", b.pid(), readPID(pidFile))
	if got := readAll(t, dbListen); got != "db" {
		t.Fatalf("after the upgrade the db service reached %q", got)
	}
	if st := getStatus(t, b.admn, "?service=db"); len(st.Servers) != 1 {
		t.Fatalf("after the upgrade db lists %+v", st.Servers)
	}
	stopNewest(t, pidFile)

	r := startBalancer(t, "--service", "db=127.0.0.1:0", "--state-file", state, "--health-interval", "0")
	if got := readAll(t, serviceListen(t, r.admn, "db")); got != "db" {
		t.Fatalf("after a restart the db service reached %q", got)
	}
}
