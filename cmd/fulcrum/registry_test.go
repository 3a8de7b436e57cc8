package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
	"github.com/fulcrumlb/fulcrum/pool/etcdreg"
	"github.com/fulcrumlb/fulcrum/pool/etcdreg/etcdtest"
)

// Several fulcrum processes sharing one registry in a 3-member etcd cluster, all on loopback.

// startSharing starts n balancers on cluster c with --registry and --ttl ttl.
func startSharing(t *testing.T, c *etcdtest.Cluster, n int, ttl time.Duration) []*balancer {
	t.Helper()
	bs := make([]*balancer, n)
	for i := range bs {
		bs[i] = startBalancer(t, "--registry", c.URL("/fulcrum"), "--ttl", ttl.String())
	}
	return bs
}

// sharedBackend starts a 3-member cluster and two balancers on it, and registers an echo
// backend at the first; it returns once the second routes to it.
func sharedBackend(t *testing.T, ttl time.Duration) (*etcdtest.Cluster, []*balancer, *backend) {
	t.Helper()
	c := etcdtest.Start(t, 3)
	bs := startSharing(t, c, 2, ttl)
	be := startBackend(t, echoHandler)
	mustAdmin(t, bs[0], "add", be.Addr())
	eventually(t, time.Second, "routable at B", func() bool { return echoes(bs[1].listen) == nil })
	return c, bs, be
}

// echoes makes one connection through the balancer at addr and reports whether a backend
// echoed it.
func echoes(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	msg := []byte("through the balancer")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read the echo: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// registryStatus is the registry part of /upstream/status.
type registryStatus struct {
	Registry string `json:"registry"`
	Healthy  bool   `json:"registry_healthy"`
}

func readRegistryStatus(t *testing.T, admin string) registryStatus {
	t.Helper()
	body, code, err := adminGet(admin, "/upstream/status")
	if err != nil || code != http.StatusOK {
		t.Fatalf("status: %d %v %s", code, err, body)
	}
	var st registryStatus
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// admin calls path?host=HOST&port=PORT on the balancer's admin API.
func adminOp(b *balancer, op, addr string) ([]byte, int, error) {
	host, port, _ := net.SplitHostPort(addr)
	return adminGet(b.admn, "/upstream/"+op+"?host="+host+"&port="+port)
}

func mustAdmin(t *testing.T, b *balancer, op, addr string) {
	t.Helper()
	if body, code, err := adminOp(b, op, addr); err != nil || code != http.StatusOK {
		t.Fatalf("%s %s: %d %v %s", op, addr, code, err, body)
	}
}

func stateAt(t *testing.T, b *balancer, key string) string {
	t.Helper()
	return status(t, b.admn)[key].State // "" when not listed
}

func TestEtcdRegistrySharedByTwoBalancers(t *testing.T) {
	const ttl = 2 * time.Second
	c := etcdtest.Start(t, 3)
	bs := startSharing(t, c, 2, ttl)
	a, b := bs[0], bs[1]
	be := startBackend(t, echoHandler)
	key := be.Addr()
	if st := readRegistryStatus(t, a.admn); st.Registry != "etcd" || !st.Healthy {
		t.Fatalf("status of A: %+v, want etcd and healthy", st)
	}

	mustAdmin(t, a, "add", key)
	eventually(t, time.Second, "heartbeat at A routable at B", func() bool { return echoes(b.listen) == nil })
	mustAdmin(t, a, "drain", key)
	eventually(t, time.Second, "drain at A seen at B", func() bool { return stateAt(t, b, key) == "draining" })
	if err := echoes(b.listen); err == nil {
		t.Fatal("B routed to a backend drained at A")
	}
	mustAdmin(t, b, "undrain", key)
	eventually(t, time.Second, "undrain at B seen at A", func() bool { return echoes(a.listen) == nil })
	mustAdmin(t, b, "remove", key)
	eventually(t, time.Second, "remove at B seen at A", func() bool { s := stateAt(t, a, key); return s == "" || s == "removed" })
	if _, code, _ := adminOp(b, "remove", key); code != http.StatusNotFound {
		t.Fatalf("second remove: %d, want 404", code)
	}

	// A silent backend leaves every balancer after its TTL, and not before.
	start := time.Now()
	mustAdmin(t, b, "add", key)
	added := time.Now()
	for name, bal := range map[string]*balancer{"A": a, "B": b} {
		eventually(t, time.Second, "the backend at "+name, func() bool { return stateAt(t, bal, key) == "up" })
	}
	for name, bal := range map[string]*balancer{"A": a, "B": b} {
		eventually(t, ttl+3*time.Second, "expiry at "+name, func() bool { return stateAt(t, bal, key) == "" })
		gone := time.Now()
		if gone.Before(start.Add(ttl)) || gone.Sub(added) > ttl+1500*time.Millisecond {
			t.Errorf("%s dropped the silent backend %v after its heartbeat; want between %v and %v", name, gone.Sub(added), ttl, ttl+1500*time.Millisecond)
		}
	}
}

func TestEtcdRegistryHeartbeatsAtAnyOfThree(t *testing.T) {
	const ttl = 2 * time.Second
	c := etcdtest.Start(t, 3)
	bs := startSharing(t, c, 3, ttl)
	be := startBackend(t, echoHandler)
	mustAdmin(t, bs[2], "add", be.Addr())
	for i, b := range bs[:2] {
		eventually(t, time.Second, fmt.Sprintf("heartbeat at C routable at %c", 'A'+i), func() bool { return echoes(b.listen) == nil })
	}
	// Heartbeats to each balancer in turn for three TTLs: one lease, renewed by all three.
	for i, end := 0, time.Now().Add(3*ttl); time.Now().Before(end); i++ {
		mustAdmin(t, bs[i%3], "add", be.Addr())
		for _, b := range bs {
			if s := stateAt(t, b, be.Addr()); s != "up" {
				t.Fatalf("backend %q at a balancer while heartbeats go round", s)
			}
		}
		time.Sleep(400 * time.Millisecond) // the backend's heartbeat interval
	}
}

// heartbeatLoop heartbeats a backend to the balancers in turn every interval until stop is
// closed, counting failures (which an election may cause).
func heartbeatLoop(bs []*balancer, addr string, interval time.Duration, stop chan struct{}, failed *atomic.Int64) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; ; i++ {
		if _, code, err := adminOp(bs[i%len(bs)], "add", addr); err != nil || code != http.StatusOK {
			failed.Add(1)
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

func TestEtcdLeaderKilledNoConnectionFails(t *testing.T) {
	const ttl = 3 * time.Second
	c, bs, be := sharedBackend(t, ttl)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var hbFailed, connFailed, connOK atomic.Int64
	stopped := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopped() // a Fatal below must not leave them running past the test
	wg.Go(func() { heartbeatLoop(bs, be.Addr(), 500*time.Millisecond, stop, &hbFailed) })
	for _, b := range bs {
		wg.Go(func() {
			pace := time.NewTicker(10 * time.Millisecond) // a steady stream, gentle on a shared machine
			defer pace.Stop()
			for {
				select {
				case <-stop:
					return
				case <-pace.C:
				}
				if err := echoes(b.listen); err != nil {
					connFailed.Add(1)
					t.Errorf("connection through %s failed: %v", b.listen, err)
				} else {
					connOK.Add(1)
				}
			}
		})
	}
	leader := c.Leader(t)
	c.Nodes[leader].Kill(t)
	killed := time.Now()
	eventually(t, 3*ttl, "two TTLs after the kill", func() bool { return time.Since(killed) > 2*ttl })
	stopped()
	t.Logf("leader killed: %d connections ok, %d failed; %d heartbeats failed", connOK.Load(), connFailed.Load(), hbFailed.Load())
	for _, b := range bs {
		if s := stateAt(t, b, be.Addr()); s != "up" {
			t.Errorf("backend %q after the leader's death, want up", s)
		}
	}
}

// Every etcd member stopped for longer than the TTL: both balancers keep routing, registrations
// get 503 with a JSON error, status says unhealthy; once etcd is back, everything converges.
func TestEtcdOutageKeepsRoutingAndConverges(t *testing.T) {
	const ttl = 2 * time.Second
	c, bs, be := sharedBackend(t, ttl)
	stop := make(chan struct{})
	var hbFailed atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() { heartbeatLoop(bs, be.Addr(), 500*time.Millisecond, stop, &hbFailed) })
	defer func() { close(stop); wg.Wait() }()

	c.StopAll(t)
	down := time.Now()
	for _, b := range bs {
		eventually(t, 10*time.Second, "registry_healthy false", func() bool { return !readRegistryStatus(t, b.admn).Healthy })
	}
	other := startBackend(t, echoHandler)
	start := time.Now()
	body, code, err := adminOp(bs[1], "add", other.Addr())
	var reply struct{ Error string }
	if err != nil || code != http.StatusServiceUnavailable || json.Unmarshal(body, &reply) != nil || reply.Error == "" {
		t.Fatalf("add with etcd down: %d %v %s; want 503 with a JSON error", code, err, body)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("add with etcd down answered after %v", took)
	}
	if body, _, _ := adminGet(bs[0].admn, "/metrics"); !strings.Contains(string(body), `fulcrum_registry_healthy{registry="etcd"} 0`) {
		t.Error("fulcrum_registry_healthy does not say etcd is lost")
	}
	eventually(t, 3*ttl, "an outage longer than the TTL", func() bool { return time.Since(down) > ttl+time.Second })
	for _, b := range bs {
		if err := echoes(b.listen); err != nil {
			t.Fatalf("%s stopped routing during the outage: %v", b.listen, err)
		}
	}

	c.StartAll(t)
	for _, b := range bs {
		eventually(t, 10*time.Second, "registry_healthy true", func() bool { return readRegistryStatus(t, b.admn).Healthy })
	}
	eventually(t, 5*time.Second, "a registration taken again", func() bool {
		_, code, _ := adminOp(bs[1], "add", other.Addr())
		return code == http.StatusOK
	})
	for _, b := range bs {
		eventually(t, time.Second, "both backends at every balancer", func() bool {
			st := status(t, b.admn)
			return st[be.Addr()].State == "up" && st[other.Addr()].State == "up"
		})
		lost, back := strings.Count(b.log(), "etcd registry lost"), strings.Count(b.log(), "etcd registry back")
		if lost != 1 || back != 1 {
			t.Errorf("%s logged the loss %d times and the recovery %d times, want once each", b.listen, lost, back)
		}
	}
}

// Keys carry the service: a backend registered for db by another instance reaches db's
// listener only, and a key for a service this balancer does not serve is ignored.
func TestEtcdRegistryKeysCarryTheService(t *testing.T) {
	c := etcdtest.Start(t, 1)
	dbAddr := resFreeAddr(t)
	b := startBalancer(t, "--registry", c.URL("/fulcrum"), "--ttl", "5s", "--service", "db="+dbAddr, "--health-interval", "0")
	web, db, other := startBackend(t, nameHandler("web")), startBackend(t, nameHandler("db")), startBackend(t, nameHandler("other"))
	cfg, err := etcdreg.ParseURL(c.URL("/fulcrum"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.TTL, cfg.Logger = 5*time.Second, quiet
	st, err := etcdreg.Open(cfg) // another balancer, as far as b can tell
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for service, be := range map[string]*backend{pool.DefaultService: web, "db": db, "cache": other} {
		if _, err := st.Register(context.Background(), service, be.Addr(), netip.Addr{}, 1); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, time.Second, "each service routed to its own backend", func() bool {
		return readAll(t, b.listen) == "web" && readAll(t, dbAddr) == "db"
	})
	if _, ok := status(t, b.admn)[other.Addr()]; ok {
		t.Fatal("a backend of a service this balancer does not serve got in")
	}

	// Through the admin API of another balancer, with the service parameter.
	a := startBalancer(t, "--registry", c.URL("/fulcrum"), "--ttl", "5s", "--service", "db="+resFreeAddr(t), "--health-interval", "0")
	db2 := startBackend(t, nameHandler("db2"))
	host, port, _ := net.SplitHostPort(db2.Addr())
	if body, code, err := adminGet(a.admn, "/upstream/add?service=db&host="+host+"&port="+port); err != nil || code != http.StatusOK {
		t.Fatalf("add to db at A: %d %v %s", code, err, body)
	}
	if _, code, _ := adminGet(a.admn, "/upstream/drain?service=db&host="+host+"&port="+port); code != http.StatusOK {
		t.Fatalf("drain in db at A: %d", code)
	}
	eventually(t, time.Second, "db's new backend, drained, at B", func() bool {
		return status(t, b.admn)[db2.Addr()].State == "draining"
	})
	if _, code, _ := adminGet(b.admn, "/upstream/remove?service=db&host="+host+"&port="+port); code != http.StatusOK {
		t.Fatalf("remove from db at B: %d", code)
	}
	eventually(t, time.Second, "db's backend removed at A", func() bool {
		_, ok := status(t, a.admn)[db2.Addr()]
		return !ok
	})
}

func TestEtcdRegistryRefusesShortTTL(t *testing.T) {
	needBinary(t)
	for _, tc := range []struct{ args, says string }{
		{"--ttl 1s", "etcd leases last at least 2s"},
		{"--ttl 0s", "etcd leases last at least 2s"},
		{"--ttl 5s --etcd-cert c.pem", "both the cert and the key"},
		{"--ttl 5s --etcd-user lb", "FULCRUM_ETCD_PASSWORD"},
	} {
		args := append([]string{"serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
			"--registry", "etcd://127.0.0.1:2379/fulcrum"}, strings.Fields(tc.args)...)
		out, err := exec.Command(fulcrumBin, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.says) {
			t.Errorf("fulcrum %s: %v, %s; want a failure saying %q", tc.args, err, out, tc.says)
		}
	}
	out, err := exec.Command(fulcrumBin, "serve", "--etcd-user", "lb").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "needs --registry") {
		t.Errorf("--etcd-user without --registry: %v, %s", err, out)
	}
}

// TestEtcdRegistrySurvivesUpgrade: a balancer on etcd upgraded by SIGHUP serves the backends
// etcd holds, takes their heartbeats, and still sees what another balancer registers.
func TestEtcdRegistrySurvivesUpgrade(t *testing.T) {
	const ttl = 3 * time.Second
	c := etcdtest.Start(t, 3)
	pidFile := filepath.Join(t.TempDir(), "fulcrum.pid")
	a := startBalancer(t, "--registry", c.URL("/fulcrum"), "--ttl", ttl.String(), "--pid-file", pidFile)
	t.Cleanup(func() { stopNewest(t, pidFile) })
	b := startSharing(t, c, 1, ttl)[0]
	first, second := startBackend(t, echoHandler), startBackend(t, echoHandler)
	mustAdmin(t, a, "add", first.Addr())
	eventually(t, 10*time.Second, "the PID file names the balancer", func() bool { return readPID(pidFile) == a.pid() })

	syscall.Kill(a.pid(), syscall.SIGHUP)
	eventually(t, 30*time.Second, "a successor", func() bool { p := readPID(pidFile); return p != 0 && p != a.pid() })
	if err := echoes(a.listen); err != nil {
		t.Fatalf("after the upgrade: %v", err)
	}
	mustAdmin(t, a, "add", first.Addr()) // a heartbeat, answered by the successor
	mustAdmin(t, b, "add", second.Addr())
	eventually(t, 2*time.Second, "a backend registered at B after the upgrade", func() bool {
		return stateAt(t, a, second.Addr()) == "up"
	})
	if st := readRegistryStatus(t, a.admn); st.Registry != "etcd" || !st.Healthy {
		t.Fatalf("successor's registry status %+v", st)
	}
}

// With etcd, --state-file is the last known set for a restart: a balancer that starts while
// etcd is unreachable routes to the backends it saved (and takes no registration), and once
// it reaches etcd, etcd's set replaces the saved one.
func TestEtcdStateFileBridgesARestart(t *testing.T) {
	const ttl = 2 * time.Second
	c := etcdtest.Start(t, 3)
	state := filepath.Join(t.TempDir(), "state.json")
	withState := func(registry string) *balancer {
		return startBalancer(t, "--registry", registry, "--ttl", ttl.String(), "--state-file", state)
	}
	saved, later := startBackend(t, echoHandler), startBackend(t, echoHandler)
	a := withState(c.URL("/fulcrum"))
	mustAdmin(t, a, "add", saved.Addr())
	eventually(t, time.Second, "routable at A", func() bool { return echoes(a.listen) == nil })
	a.stop(t)

	// Nothing listens at this etcd address: the restart has only the state file.
	offline := withState(fmt.Sprintf("etcd://127.0.0.1:%d/fulcrum", freePort(t)))
	if err := echoes(offline.listen); err != nil {
		t.Fatalf("restarted with etcd unreachable: the saved backend is not routed to: %v", err)
	}
	eventually(t, 10*time.Second, "registry_healthy false", func() bool { return !readRegistryStatus(t, offline.admn).Healthy })
	if _, code, _ := adminOp(offline, "add", later.Addr()); code != http.StatusServiceUnavailable {
		t.Fatalf("add with etcd unreachable: %d, want 503", code)
	}
	offline.stop(t)

	// Meanwhile etcd forgot the saved backend (nobody renewed its lease) and took another.
	other := startSharing(t, c, 1, ttl)[0]
	mustAdmin(t, other, "add", later.Addr())
	eventually(t, 3*ttl, "the saved backend's lease expired", func() bool {
		s := stateAt(t, other, saved.Addr())
		return s == "" || s == "removed"
	})
	back := withState(c.URL("/fulcrum"))
	eventually(t, 5*time.Second, "etcd's set at the restarted balancer", func() bool {
		st := status(t, back.admn)
		s := st[saved.Addr()].State
		return st[later.Addr()].State == "up" && (s == "" || s == "removed")
	})
}
