package etcdreg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/fulcrumlb/fulcrum/pool/etcdreg/etcdtest"
)

// heartbeaters simulates backends that heartbeat every interval, each to the instances in
// turn, as backends behind a shared address would. They stop when the test ends; failures are
// counted, not fatal: the tests decide what failures they allow.
type heartbeaters struct {
	failed atomic.Int64
	ok     atomic.Int64
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startHeartbeaters(t *testing.T, stores []*Store, hostports []string, interval time.Duration) *heartbeaters {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := &heartbeaters{cancel: cancel}
	for i, hp := range hostports {
		h.wg.Go(func() { h.run(ctx, stores, i, hp, interval) })
	}
	t.Cleanup(h.stop)
	return h
}

func (h *heartbeaters) run(ctx context.Context, stores []*Store, turn int, hp string, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		st := stores[turn%len(stores)]
		turn++
		if _, err := st.Register(ctx, "web", hp, netip.Addr{}, 0); err != nil {
			h.failed.Add(1)
		} else {
			h.ok.Add(1)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (h *heartbeaters) stop() {
	h.cancel()
	h.wg.Wait()
}

func backendsOf(n, firstPort int) []string {
	hps := make([]string, n)
	for i := range hps {
		hps[i] = fmt.Sprintf("127.0.0.1:%d", firstPort+i)
	}
	return hps
}

func waitAll(t *testing.T, sk *sink, hps []string, timeout time.Duration, what string) {
	t.Helper()
	waitFor(t, timeout, what, func() bool {
		for _, hp := range hps {
			if _, ok := sk.get("web", hp); !ok {
				return false
			}
		}
		return true
	})
}

func TestLeaderKilledDuringHeartbeatsExpiresNoBackend(t *testing.T) {
	const ttl = 4 * time.Second
	c := etcdtest.Start(t, 3)
	a, b := openStore(t, c, "/fulcrum", ttl), openStore(t, c, "/fulcrum", ttl)
	atA, atB := watch(t, a), watch(t, b)
	hps := backendsOf(10, 7000)
	hb := startHeartbeaters(t, []*Store{a, b}, hps, 500*time.Millisecond)
	waitAll(t, atA, hps, 2*time.Second, "every backend at A")
	waitAll(t, atB, hps, 2*time.Second, "every backend at B")

	leader := c.Leader(t)
	c.Nodes[leader].Kill(t)
	killed := time.Now()
	newLeader := c.Leader(t)
	t.Logf("leader %s killed; %s leads after %v", c.Nodes[leader].Name, c.Nodes[newLeader].Name, time.Since(killed))
	// Keep heartbeating for two TTLs after the kill: any lease that lapsed would show as a delete.
	before := hb.ok.Load()
	waitFor(t, 3*ttl, "two TTLs of heartbeats after the kill", func() bool { return time.Since(killed) > 2*ttl })
	if hb.ok.Load() == before {
		t.Fatal("no heartbeat succeeded after the leader was killed")
	}
	for name, sk := range map[string]*sink{"A": atA, "B": atB} {
		if d, _ := sk.counts(); d != 0 || sk.len() != len(hps) {
			t.Errorf("%s: %d deletes, %d backends; want 0 and %d", name, d, sk.len(), len(hps))
		}
	}
	t.Logf("heartbeats: %d ok, %d failed around the election", hb.ok.Load(), hb.failed.Load())
	c.Nodes[leader].Start(t)
	c.WaitHealthy(t)
}

// Every member stopped for longer than the TTL: the instances keep their last set, writes
// fail fast with ErrUnavailable, Healthy is false; once the members are back, everything the
// backends kept heartbeating is registered and every instance converges.
func TestOutageKeepsLastSetAndConvergesAfter(t *testing.T) {
	const ttl = 2 * time.Second
	c := etcdtest.Start(t, 3)
	logs := &recordingHandler{}
	a := openStore(t, c, "/fulcrum", ttl, func(cfg *Config) { cfg.Logger = slog.New(logs) })
	b := openStore(t, c, "/fulcrum", ttl)
	atA, atB := watch(t, a), watch(t, b)
	hps := backendsOf(5, 7100)
	startHeartbeaters(t, []*Store{a, b}, hps, 300*time.Millisecond)
	beat(t, a, "web", "127.0.0.1:7300", 1) // a backend that falls silent as etcd goes away
	silent := []string{"127.0.0.1:7300"}
	waitAll(t, atA, append(hps, silent...), 2*time.Second, "every backend at A")
	waitAll(t, atB, append(hps, silent...), 2*time.Second, "every backend at B")
	_, resyncsBefore := atA.counts()

	c.StopAll(t)
	down := time.Now()
	waitFor(t, 10*time.Second, "A and B unhealthy", func() bool { return !a.Healthy() && !b.Healthy() })
	checkWritesFailFast(t, a)
	late := backendsOf(1, 7200) // a backend whose first heartbeat comes during the outage
	startHeartbeaters(t, []*Store{b, a}, late, 300*time.Millisecond)
	waitFor(t, 3*ttl, "an outage longer than the TTL", func() bool { return time.Since(down) > ttl+time.Second })
	for name, sk := range map[string]*sink{"A": atA, "B": atB} {
		if d, _ := sk.counts(); d != 0 || sk.len() != len(hps)+1 {
			t.Fatalf("%s during the outage: %d deletes, %d backends; want 0 and %d", name, d, sk.len(), len(hps)+1)
		}
	}

	c.StartAll(t)
	waitFor(t, 10*time.Second, "A and B healthy", func() bool { return a.Healthy() && b.Healthy() })
	all := append(hps, late...)
	waitAll(t, atA, all, 5*time.Second, "every backend at A after the outage")
	waitAll(t, atB, all, 5*time.Second, "every backend at B after the outage")
	if _, r := atA.counts(); r == resyncsBefore {
		t.Error("A did not list again when etcd came back")
	}
	back := time.Now()
	for name, sk := range map[string]*sink{"A": atA, "B": atB} {
		waitFor(t, ttl+3*time.Second, "the silent backend's expiry at "+name, func() bool { _, ok := sk.get("web", silent[0]); return !ok })
		if d, _ := sk.counts(); d != 1 {
			t.Errorf("%s deleted %d backends; want only the silent one", name, d)
		}
	}
	t.Logf("the silent backend left %v after etcd was back", time.Since(back))
	if lost, back := logs.count("etcd registry lost"), logs.count("etcd registry back"); lost != 1 || back != 1 {
		t.Errorf("logged the loss %d times and the recovery %d times, want once each", lost, back)
	}
}

// checkWritesFailFast checks that every write answers ErrUnavailable within a few seconds
// while etcd is down.
func checkWritesFailFast(t *testing.T, st *Store) {
	t.Helper()
	ctx := context.Background()
	limit := st.cfg.requestTimeout() + time.Second
	for name, call := range map[string]func() error{
		"heartbeat": func() error { _, err := st.Heartbeat(ctx, "web", "127.0.0.1:7100", 0); return err },
		"register":  func() error { _, err := st.Register(ctx, "web", "127.0.0.1:7999", netip.Addr{}, 0); return err },
		"drain":     func() error { return st.Drain(ctx, "web", "127.0.0.1:7100") },
		"remove":    func() error { return st.Remove(ctx, "web", "127.0.0.1:7101") },
	} {
		start := time.Now()
		err := call()
		if took := time.Since(start); !errors.Is(err, ErrUnavailable) || took > limit {
			t.Errorf("%s during the outage: %v after %v; want ErrUnavailable within %v", name, err, took, limit)
		}
	}
}

func TestWatchEndsWhenCompactedPast(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := rawClient(t, c)
	a := openStore(t, c, "/fulcrum", 5*time.Second)
	ctx := context.Background()
	beat(t, a, "web", "127.0.0.1:8080", 1)
	resp, err := cli.Put(ctx, "/elsewhere", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = a.follow(wctx, newSink(), 1)
	if !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("follow from a compacted revision: %v, want ErrCompacted (and so a new list)", err)
	}
}

// recordingHandler is a slog.Handler that keeps the messages it is given.
type recordingHandler struct {
	mu   sync.Mutex
	msgs []string
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}

func (h *recordingHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if m == msg {
			n++
		}
	}
	return n
}
