package etcdreg

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
	"github.com/fulcrumlb/fulcrum/pool/etcdreg/etcdtest"
)

// instance is one simulated balancer: a Store, its local pools and the Mirror that keeps them.
type instance struct {
	store *Store
	pools map[string]*pool.Pool
}

func startInstance(t *testing.T, c *etcdtest.Cluster, ttl time.Duration, static ...pool.Address) *instance {
	t.Helper()
	in := &instance{store: openStore(t, c, "/fulcrum", ttl), pools: map[string]*pool.Pool{}}
	for _, name := range []string{"web", "db"} {
		in.pools[name] = &pool.Pool{Logger: quiet} // no TTL: expiry is etcd's
	}
	for _, a := range static {
		if err := in.pools["web"].RegisterStatic(a, 1); err != nil {
			t.Fatal(err)
		}
	}
	m := &Mirror{Pools: in.pools, Logger: quiet}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		in.store.Watch(ctx, m)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return in
}

func (in *instance) web() *Shared { return in.store.Service("web", in.pools["web"]) }

func (in *instance) state(service, key string) pool.State {
	st, ok := in.pools[service].Lookup(key)
	if !ok {
		return ""
	}
	return st.State
}

func addr(t *testing.T, hostport string) pool.Address {
	t.Helper()
	a, err := pool.ParseAddress(hostport)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestSharedRegistryAcrossInstances(t *testing.T) {
	c := etcdtest.Start(t, 3)
	static := addr(t, "127.0.0.1:7000")
	a := startInstance(t, c, 5*time.Second, static)
	b := startInstance(t, c, 5*time.Second)
	key := "127.0.0.1:8080"

	created, err := a.web().Register(addr(t, key), 3)
	if err != nil || !created {
		t.Fatalf("Register at A: %v, %v", created, err)
	}
	if a.state("web", key) != pool.StateUp {
		t.Fatal("A's own pool does not hold the backend it registered")
	}
	waitFor(t, time.Second, "the backend routable at B", func() bool { return b.state("web", key) == pool.StateUp })
	if st, _ := b.pools["web"].Lookup(key); st.Weight != 3 {
		t.Fatalf("weight at B = %d, want 3", st.Weight)
	}
	if _, ok := b.pools["db"].Lookup(key); ok {
		t.Fatal("a backend of web reached db")
	}
	if known, err := b.web().Heartbeat(key, 0); !known || err != nil {
		t.Fatalf("Heartbeat at B of a backend A registered: %v, %v", known, err)
	}
	if known, err := b.web().Heartbeat("127.0.0.1:9999", 0); known || err != nil {
		t.Fatalf("Heartbeat at B of an unknown backend: %v, %v; want unknown", known, err)
	}

	if err := a.web().Drain(key); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "drain at B", func() bool { return b.state("web", key) == pool.StateDraining })
	if err := b.web().Deregister(key); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "removal at A", func() bool { s := a.state("web", key); return s == "" || s == pool.StateRemoved })
	if err := b.web().Deregister(key); !errors.Is(err, pool.ErrUnknownBackend) {
		t.Fatalf("second Deregister: %v, want pool.ErrUnknownBackend", err)
	}
	if a.state("web", static.Key()) != pool.StateStatic {
		t.Fatal("the mirror touched a static backend")
	}
}

// TestNamedBackendDialedAtTheCheckedAddress: a backend named by a host name is dialed, at
// every instance, at the address the instance that took the registration resolved and
// checked; no other instance resolves the name (which could now answer a refused address).
func TestNamedBackendDialedAtTheCheckedAddress(t *testing.T) {
	c := etcdtest.Start(t, 3)
	a := startInstance(t, c, 5*time.Second)
	b := startInstance(t, c, 5*time.Second)
	named := pool.Address{Host: "svc.test", Port: 80, IP: netip.MustParseAddr("198.51.100.7")}
	if _, err := a.web().Register(named, 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the backend at B", func() bool { return b.state("web", named.Key()) == pool.StateUp })
	st, _ := b.pools["web"].Lookup(named.Key())
	if got := st.Address.DialHost(); got != "198.51.100.7" {
		t.Fatalf("B dials %s, want the address A checked", got)
	}
}

func TestMirrorResyncReplacesRuntimeBackends(t *testing.T) {
	p := &pool.Pool{Logger: quiet}
	static := pool.Address{Host: "127.0.0.1", Port: 7000}
	if err := p.RegisterStatic(static, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Register(pool.Address{Host: "127.0.0.1", Port: 7001}, 1); err != nil {
		t.Fatal(err)
	}
	m := &Mirror{Pools: map[string]*pool.Pool{"web": p}, Logger: quiet}
	m.Resync([]Entry{
		{Service: "web", HostPort: "127.0.0.1:7002", Weight: 2, Draining: true},
		{Service: "other", HostPort: "127.0.0.1:7003", Weight: 1},
		{Service: "web", HostPort: "bad host:1", Weight: 1},
	})
	want := map[string]pool.State{"127.0.0.1:7000": pool.StateStatic, "127.0.0.1:7001": pool.StateRemoved, "127.0.0.1:7002": pool.StateDraining}
	for key, state := range want {
		st, ok := p.Lookup(key)
		if state == pool.StateRemoved && !ok {
			continue // removed with no connection: forgotten at once
		}
		if st.State != state {
			t.Errorf("%s: state %q, want %q", key, st.State, state)
		}
	}
	if _, ok := p.Lookup("127.0.0.1:7003"); ok {
		t.Error("another service's backend got into web's pool")
	}
	if p.Len() != 2 { // 7000 and 7002; 7001 had no connection and is forgotten
		t.Fatalf("pool holds %d backends, want 2: an unknown service's or an unreadable entry got in", p.Len())
	}
}

func TestSharedRefusesBeforeWriting(t *testing.T) {
	s := &Store{cfg: Config{Prefix: "/fulcrum"}} // no client: a call that got past the checks would panic
	full := &pool.Pool{MaxBackends: 1, Logger: quiet}
	if _, err := full.Register(pool.Address{Host: "127.0.0.1", Port: 1}, 1); err != nil {
		t.Fatal(err)
	}
	r := s.Service("web", full)
	if _, err := r.Register(pool.Address{Host: "127.0.0.1", Port: 2}, 1); !errors.Is(err, pool.ErrRegistryFull) {
		t.Fatalf("Register into a full pool: %v, want ErrRegistryFull", err)
	}
	if _, err := r.Register(pool.Address{Host: "127.0.0.1", Port: 2}, pool.MaxWeight+1); err == nil {
		t.Fatal("Register with a weight above MaxWeight succeeded")
	}
	if _, err := r.Heartbeat("127.0.0.1:1", -1); err == nil {
		t.Fatal("Heartbeat with a negative weight succeeded")
	}
}

func TestSharedUnavailableIsPoolErrUnavailable(t *testing.T) {
	c := etcdtest.Start(t, 1)
	in := startInstance(t, c, 2*time.Second)
	key := "127.0.0.1:8080"
	if _, err := in.web().Register(addr(t, key), 1); err != nil {
		t.Fatal(err)
	}
	c.StopAll(t)
	start := time.Now()
	_, err := in.web().Register(addr(t, "127.0.0.1:8081"), 1)
	if !errors.Is(err, pool.ErrUnavailable) || time.Since(start) > 4*time.Second {
		t.Fatalf("Register with etcd down: %v after %v, want pool.ErrUnavailable within 4 s", err, time.Since(start))
	}
	if _, ok := in.pools["web"].Lookup("127.0.0.1:8081"); ok {
		t.Fatal("a registration etcd did not take reached the local pool")
	}
	for name, op := range map[string]func(string) error{"drain": in.web().Drain, "deregister": in.web().Deregister} {
		if err := op(key); !errors.Is(err, pool.ErrUnavailable) {
			t.Errorf("%s with etcd down: %v, want pool.ErrUnavailable", name, err)
		}
	}
	if in.state("web", key) != pool.StateUp {
		t.Fatal("the local pool lost or changed its backend while etcd was down")
	}
}

// TestHeartbeatRecreatesKeyWithCheckedAddress: a heartbeat of a backend the local pool knows
// but etcd has lost (a lease that ran out during an outage, a delete the watch has not brought
// yet) makes the key again with the address checked when the backend came, so that the other
// instances still dial that address.
func TestHeartbeatRecreatesKeyWithCheckedAddress(t *testing.T) {
	c := etcdtest.Start(t, 3)
	st := openStore(t, c, "/fulcrum", 5*time.Second)
	local := &pool.Pool{Logger: quiet}
	named := pool.Address{Host: "svc.test", Port: 80, IP: netip.MustParseAddr("198.51.100.7")}
	if _, err := local.Register(named, 1); err != nil { // known here, absent from etcd
		t.Fatal(err)
	}
	if known, err := st.Service("web", local).Heartbeat(named.Key(), 0); !known || err != nil {
		t.Fatalf("heartbeat: known %v, err %v", known, err)
	}
	resp, err := rawClient(t, c).Get(context.Background(), "/fulcrum/web/"+named.Key())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("key not made again: %v %v", resp, err)
	}
	e, err := entryOf("/fulcrum", resp.Kvs[0].Key, resp.Kvs[0].Value)
	if err != nil || e.Address != "198.51.100.7" {
		t.Fatalf("entry %+v (%v): want the checked address", e, err)
	}
}
