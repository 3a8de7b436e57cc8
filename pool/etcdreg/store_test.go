package etcdreg

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fulcrumlb/fulcrum/pool/etcdreg/etcdtest"
)

func TestHeartbeatAtOneInstanceSeenAtAnother(t *testing.T) {
	_, a, b := twoStores(t, 5*time.Second)
	atB := watch(t, b)

	start := time.Now()
	if !beat(t, a, "web", "127.0.0.1:8080", 3) {
		t.Fatal("first heartbeat did not create the key")
	}
	waitFor(t, time.Second, "the backend at B", func() bool { _, ok := atB.get("web", "127.0.0.1:8080"); return ok })
	t.Logf("seen at B %v after the heartbeat began", time.Since(start))
	e, _ := atB.get("web", "127.0.0.1:8080")
	if e.Weight != 3 || e.Draining || e.Created.IsZero() {
		t.Fatalf("entry at B = %+v, want weight 3, not draining, a created time", e)
	}
	if beat(t, a, "web", "127.0.0.1:8080", 0) {
		t.Fatal("second heartbeat created the key again")
	}
	if beat(t, b, "web", "127.0.0.1:8080", 0) {
		t.Fatal("a heartbeat at B created a key that A had created")
	}
}

func TestHeartbeatAtOtherInstanceRenewsTheSameLease(t *testing.T) {
	c, a, b := twoStores(t, 2*time.Second)
	cli := rawClient(t, c)
	atA := watch(t, a)

	beat(t, a, "db", "127.0.0.1:5432", 1)
	lease := leaseOf(t, cli, "/fulcrum/db/127.0.0.1:5432")
	// Only B heartbeats from now on, for twice the TTL: A's lease must stay alive.
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); {
		beat(t, b, "db", "127.0.0.1:5432", 0)
		time.Sleep(300 * time.Millisecond) // the heartbeat interval of the simulated backend
	}
	if got := leaseOf(t, cli, "/fulcrum/db/127.0.0.1:5432"); got != lease {
		t.Fatalf("lease = %x after heartbeats at B, want A's %x", got, lease)
	}
	if d, _ := atA.counts(); d != 0 {
		t.Fatalf("A saw %d deletes of a backend heartbeaten at B", d)
	}
}

func TestSilentBackendLeavesEveryInstanceAfterItsTTL(t *testing.T) {
	const ttl = 2 * time.Second
	_, a, b := twoStores(t, ttl)
	atA, atB := watch(t, a), watch(t, b)

	begin := time.Now()
	beat(t, a, "web", "127.0.0.1:8080", 1)
	end := time.Now()
	for name, sk := range map[string]*sink{"A": atA, "B": atB} {
		waitFor(t, time.Second, "the backend at "+name, func() bool { _, ok := sk.get("web", "127.0.0.1:8080"); return ok })
	}
	for name, sk := range map[string]*sink{"A": atA, "B": atB} {
		waitFor(t, ttl+3*time.Second, "expiry at "+name, func() bool { _, ok := sk.get("web", "127.0.0.1:8080"); return !ok })
		sk.mu.Lock()
		gone := sk.gone["web/127.0.0.1:8080"]
		sk.mu.Unlock()
		if gone.Before(begin.Add(ttl)) {
			t.Errorf("%s dropped the backend %v after its heartbeat, before its TTL %v", name, gone.Sub(begin), ttl)
		}
		if late := gone.Sub(end); late > ttl+1500*time.Millisecond {
			t.Errorf("%s dropped the backend %v after its heartbeat, later than TTL + 1.5 s", name, late)
		}
		t.Logf("%s dropped the silent backend %v after its heartbeat", name, gone.Sub(end))
	}
}

func TestDrainAtOneInstanceSeenAtAnother(t *testing.T) {
	c, a, b := twoStores(t, 5*time.Second)
	cli := rawClient(t, c)
	atB := watch(t, b)
	ctx := context.Background()

	beat(t, a, "web", "127.0.0.1:8080", 2)
	lease := leaseOf(t, cli, "/fulcrum/web/127.0.0.1:8080")
	if err := a.Drain(ctx, "web", "127.0.0.1:8080"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "drain at B", func() bool { e, _ := atB.get("web", "127.0.0.1:8080"); return e.Draining })
	written := modRevision(t, cli, "/fulcrum/web/127.0.0.1:8080")
	beat(t, a, "web", "127.0.0.1:8080", 0) // a heartbeat does not end draining
	if rev := modRevision(t, cli, "/fulcrum/web/127.0.0.1:8080"); rev != written {
		t.Fatalf("a heartbeat of weight 0 rewrote the drained key (revision %d → %d)", written, rev)
	}
	if e, _ := atB.get("web", "127.0.0.1:8080"); !e.Draining || e.Weight != 2 {
		t.Fatalf("after a heartbeat B holds %+v, want draining with weight 2", e)
	}
	if got := leaseOf(t, cli, "/fulcrum/web/127.0.0.1:8080"); got != lease {
		t.Fatalf("drain changed the lease from %x to %x", lease, got)
	}
	if err := b.Undrain(ctx, "web", "127.0.0.1:8080"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "undrain at B", func() bool { e, _ := atB.get("web", "127.0.0.1:8080"); return !e.Draining })
	if err := a.Drain(ctx, "web", "127.0.0.1:9999"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("drain of an unknown backend: %v, want ErrNotFound", err)
	}
}

func TestRemoveAtOneInstanceSeenAtAnother(t *testing.T) {
	c, a, b := twoStores(t, 5*time.Second)
	cli := rawClient(t, c)
	atA := watch(t, a)
	ctx := context.Background()

	beat(t, a, "web", "127.0.0.1:8080", 1)
	lease := leaseOf(t, cli, "/fulcrum/web/127.0.0.1:8080")
	waitFor(t, time.Second, "the backend at A", func() bool { _, ok := atA.get("web", "127.0.0.1:8080"); return ok })
	if err := b.Remove(ctx, "web", "127.0.0.1:8080"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "removal at A", func() bool { _, ok := atA.get("web", "127.0.0.1:8080"); return !ok })
	ttl, err := cli.TimeToLive(ctx, clientLease(lease))
	if err != nil || ttl.TTL > 0 {
		t.Fatalf("lease %x after remove: TTL %d, %v; want revoked", lease, ttl.TTL, err)
	}
	if err := b.Remove(ctx, "web", "127.0.0.1:8080"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second remove: %v, want ErrNotFound", err)
	}
	// A still holds the revoked lease: its next heartbeat must register the backend again.
	if !beat(t, a, "web", "127.0.0.1:8080", 0) {
		t.Fatal("heartbeat after remove did not create the key again")
	}
	waitFor(t, time.Second, "the backend back at A", func() bool { _, ok := atA.get("web", "127.0.0.1:8080"); return ok })
}

func TestWeightChangeReachesOtherInstances(t *testing.T) {
	c, a, b := twoStores(t, 5*time.Second)
	cli := rawClient(t, c)
	atB := watch(t, b)

	beat(t, a, "web", "[::1]:8080", 1)
	beat(t, b, "web", "[::1]:8080", 7)
	waitFor(t, time.Second, "weight 7 at B", func() bool { e, _ := atB.get("web", "[::1]:8080"); return e.Weight == 7 })
	written := modRevision(t, cli, "/fulcrum/web/[::1]:8080")
	beat(t, a, "web", "[::1]:8080", 0)
	if rev := modRevision(t, cli, "/fulcrum/web/[::1]:8080"); rev != written {
		t.Fatalf("a heartbeat of weight 0 rewrote the key (revision %d → %d)", written, rev)
	}
	if e, _ := atB.get("web", "[::1]:8080"); e.Weight != 7 {
		t.Fatalf("weight 0 changed the weight to %d", e.Weight)
	}
}

// Two instances receive the first heartbeats of the same new backends at the same moment:
// each backend must end with one key and one lease, the losers' leases revoked.
func TestCreateRaceLeavesOneLease(t *testing.T) {
	c := etcdtest.Start(t, 3)
	cli := rawClient(t, c)
	stores := []*Store{openStore(t, c, "/fulcrum", 5*time.Second), openStore(t, c, "/fulcrum", 5*time.Second)}
	const backends = 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	creates := map[string]int{}
	for i := range backends {
		hp := fmt.Sprintf("127.0.0.1:%d", 9000+i)
		for _, st := range stores {
			wg.Go(func() {
				created, err := st.Register(context.Background(), "web", hp, netip.Addr{}, 0)
				if err != nil {
					t.Errorf("heartbeat %s: %v", hp, err)
				}
				if created {
					mu.Lock()
					creates[hp]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	for i := range backends {
		hp := fmt.Sprintf("127.0.0.1:%d", 9000+i)
		if creates[hp] != 1 {
			t.Errorf("%s created %d times, want once", hp, creates[hp])
		}
		lease := leaseOf(t, cli, "/fulcrum/web/"+hp)
		for j, st := range stores {
			if k, _ := st.lookup("/fulcrum/web/" + hp); k.lease != lease {
				t.Errorf("instance %d renews lease %x for %s, the key holds %x", j, k.lease, hp, lease)
			}
		}
	}
	leases, err := cli.Leases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(leases.Leases) != backends {
		t.Fatalf("%d leases remain for %d backends: the losers' leases were not revoked", len(leases.Leases), backends)
	}
}

func TestInvalidKeysNeverReachEtcd(t *testing.T) {
	s := &Store{cfg: Config{Prefix: "/fulcrum"}} // no client: a call that got past the checks would panic
	ctx := context.Background()
	for _, tc := range []struct{ service, hostport string }{
		{"", "127.0.0.1:80"},
		{"Web", "127.0.0.1:80"},
		{"a/b", "127.0.0.1:80"},
		{"web", "127.0.0.1"},
		{"web", "127.0.0.1:0"},
		{"web", "127.0.0.1:65536"},
		{"web", "a/b:80"},
		{"web", ":80"},
	} {
		t.Run(tc.service+"_"+tc.hostport, func(t *testing.T) {
			if _, err := s.Heartbeat(ctx, tc.service, tc.hostport, 1); !errors.Is(err, ErrInvalid) {
				t.Errorf("Heartbeat: %v, want ErrInvalid", err)
			}
			if err := s.Remove(ctx, tc.service, tc.hostport); !errors.Is(err, ErrInvalid) {
				t.Errorf("Remove: %v, want ErrInvalid", err)
			}
			if err := s.Drain(ctx, tc.service, tc.hostport); !errors.Is(err, ErrInvalid) {
				t.Errorf("Drain: %v, want ErrInvalid", err)
			}
		})
	}
}

func TestCloseEndsEveryGoroutine(t *testing.T) {
	c := etcdtest.Start(t, 3)
	before := goleak.IgnoreCurrent()
	cfg, err := ParseURL(c.URL("/fulcrum"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.TTL, cfg.Logger = 5*time.Second, quiet
	st, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan error)
	go func() { watched <- st.Watch(ctx, newSink()) }()
	beat(t, st, "web", "127.0.0.1:8080", 1)
	beat(t, st, "web", "127.0.0.1:8080", 1) // over the keep-alive stream
	cancel()
	if err := <-watched; !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch returned %v, want context.Canceled", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	goleak.VerifyNone(t, before)
}

// A key deleted behind the Stores' backs (etcdctl del) is created again by the next heartbeat,
// though its lease is still alive: the watch tells the Store the key is gone.
func TestKeyDeletedByHandIsCreatedAgain(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := rawClient(t, c)
	a := openStore(t, c, "/fulcrum", 5*time.Second)
	atA := watch(t, a)
	beat(t, a, "web", "127.0.0.1:8080", 1)
	waitFor(t, time.Second, "the backend at A", func() bool { _, ok := atA.get("web", "127.0.0.1:8080"); return ok })
	if _, err := cli.Delete(context.Background(), "/fulcrum/web/127.0.0.1:8080"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the deletion at A", func() bool { _, ok := atA.get("web", "127.0.0.1:8080"); return !ok })
	if !beat(t, a, "web", "127.0.0.1:8080", 0) {
		t.Fatal("the heartbeat after a deletion renewed a lease that holds no key")
	}
	waitFor(t, time.Second, "the backend back at A", func() bool { _, ok := atA.get("web", "127.0.0.1:8080"); return ok })
}

// Heartbeat renews and never creates, as pool.Registry's does: a backend etcd does not hold
// (never registered, or its key deleted) is known false and stays absent; Register creates.
func TestHeartbeatNeverCreates(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := rawClient(t, c)
	a := openStore(t, c, "/fulcrum", 5*time.Second)
	atA := watch(t, a)
	const key = "/fulcrum/web/127.0.0.1:8080"
	heartbeat := func(weight int) bool {
		t.Helper()
		known, err := a.Heartbeat(context.Background(), "web", "127.0.0.1:8080", weight)
		if err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
		return known
	}
	if heartbeat(0) || keyValue(t, cli, key) != nil {
		t.Fatal("a heartbeat of a backend etcd never held created it, or said it was known")
	}
	beat(t, a, "web", "127.0.0.1:8080", 1)
	if !heartbeat(4) {
		t.Fatal("a heartbeat of a registered backend said it was unknown")
	}
	waitFor(t, time.Second, "weight 4 at A", func() bool { e, _ := atA.get("web", "127.0.0.1:8080"); return e.Weight == 4 })
	if _, err := cli.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the deletion at A", func() bool { _, ok := atA.get("web", "127.0.0.1:8080"); return !ok })
	if heartbeat(0) || keyValue(t, cli, key) != nil {
		t.Fatal("a heartbeat after the key was deleted created it again, or said it was known")
	}
}

// The weight is the one the backend last sent, whichever instance received it.
func TestWeightFollowsTheLastHeartbeat(t *testing.T) {
	c := etcdtest.Start(t, 1)
	a, b := openStore(t, c, "/fulcrum", 5*time.Second), openStore(t, c, "/fulcrum", 5*time.Second)
	atA, _ := watch(t, a), watch(t, b)
	beat(t, a, "web", "127.0.0.1:8080", 3)
	beat(t, b, "web", "127.0.0.1:8080", 5)
	waitFor(t, time.Second, "weight 5 at A", func() bool { e, _ := atA.get("web", "127.0.0.1:8080"); return e.Weight == 5 })
	beat(t, a, "web", "127.0.0.1:8080", 3)
	waitFor(t, time.Second, "weight 3 again at A", func() bool { e, _ := atA.get("web", "127.0.0.1:8080"); return e.Weight == 3 })
}
