package etcdreg

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/fulcrumlb/fulcrum/internal/testbed"
	"github.com/fulcrumlb/fulcrum/pool/etcdreg/etcdtest"
)

// quiet is the logger of every test Store.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// twoStores starts a 3-member cluster and opens two Stores on it under one prefix: two
// balancer instances.
func twoStores(t *testing.T, ttl time.Duration) (*etcdtest.Cluster, *Store, *Store) {
	t.Helper()
	c := etcdtest.Start(t, 3)
	return c, openStore(t, c, "/fulcrum", ttl), openStore(t, c, "/fulcrum", ttl)
}

// openStore opens a Store on cluster c under prefix, closed when the test ends. The options
// change its Config before it opens.
func openStore(t testing.TB, c *etcdtest.Cluster, prefix string, ttl time.Duration, opts ...func(*Config)) *Store {
	t.Helper()
	cfg, err := ParseURL(c.URL(prefix))
	if err != nil {
		t.Fatal(err)
	}
	cfg.TTL = ttl
	cfg.Logger = quiet
	cfg.ProbeInterval = 200 * time.Millisecond
	cfg.RequestTimeout = 2 * time.Second
	for _, o := range opts {
		o(&cfg)
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawClient is a plain etcd client for looking behind a Store's back.
func rawClient(t testing.TB, c *etcdtest.Cluster) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// sink records what a Watch delivers. Its methods are called by the Watch goroutine; tests
// read it through the locked accessors.
type sink struct {
	mu      sync.Mutex
	entries map[string]Entry     // service/hostport → entry
	seen    map[string]time.Time // service/hostport → when it last arrived
	gone    map[string]time.Time // service/hostport → when it was last deleted
	deletes int                  // Delete calls, and entries dropped by a Resync
	resyncs int
}

func newSink() *sink {
	return &sink{entries: map[string]Entry{}, seen: map[string]time.Time{}, gone: map[string]time.Time{}}
}

func (s *sink) Resync(all []Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resyncs++
	fresh := make(map[string]Entry, len(all))
	for _, e := range all {
		fresh[e.Service+"/"+e.HostPort] = e
		if _, ok := s.entries[e.Service+"/"+e.HostPort]; !ok {
			s.seen[e.Service+"/"+e.HostPort] = time.Now()
		}
	}
	for k := range s.entries {
		if _, ok := fresh[k]; !ok {
			s.deletes++
			s.gone[k] = time.Now()
		}
	}
	s.entries = fresh
}

func (s *sink) Upsert(e Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := e.Service + "/" + e.HostPort
	if _, ok := s.entries[k]; !ok {
		s.seen[k] = time.Now()
	}
	s.entries[k] = e
}

func (s *sink) Delete(service, hostport string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deletes++
	delete(s.entries, service+"/"+hostport)
	s.gone[service+"/"+hostport] = time.Now()
}

func (s *sink) get(service, hostport string) (Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[service+"/"+hostport]
	return e, ok
}

func (s *sink) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

func (s *sink) counts() (deletes, resyncs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deletes, s.resyncs
}

// watch runs st.Watch into a new sink until the test ends, and waits for its first Resync.
func watch(t testing.TB, st *Store) *sink {
	t.Helper()
	sk := newSink()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.Watch(ctx, sk)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitFor(t, 10*time.Second, "first resync", func() bool { _, r := sk.counts(); return r > 0 })
	return sk
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testbed.Eventually(t, timeout, what, cond)
}

// beat heartbeats and fails the test on error.
func beat(t testing.TB, st *Store, service, hostport string, weight int) bool {
	t.Helper()
	created, err := st.Register(context.Background(), service, hostport, netip.Addr{}, weight)
	if err != nil {
		t.Fatalf("heartbeat %s/%s: %v", service, hostport, err)
	}
	return created
}

// leaseOf reads the lease holding a key; 0 when the key does not exist.
// modRevision is the revision that last wrote key; 0 when it does not exist.
func modRevision(t testing.TB, cli *clientv3.Client, key string) int64 {
	t.Helper()
	return keyValue(t, cli, key).GetModRevision()
}

func leaseOf(t testing.TB, cli *clientv3.Client, key string) int64 {
	t.Helper()
	return keyValue(t, cli, key).GetLease()
}

// keyValue reads key as etcd holds it; nil (whose getters read zero) when it does not exist.
func keyValue(t testing.TB, cli *clientv3.Client, key string) *mvccpb.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	return resp.Kvs[0]
}

func clientLease(id int64) clientv3.LeaseID { return clientv3.LeaseID(id) }
