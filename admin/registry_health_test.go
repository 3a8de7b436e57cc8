package admin

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fulcrumlb/fulcrum/pool"
)

// sharedPool is a pool behind a shared registry that can go away: while down, every change
// fails with pool.ErrUnavailable and nothing changes.
type sharedPool struct {
	*pool.Pool
	down atomic.Bool
}

func (s *sharedPool) Kind() string  { return "etcd" }
func (s *sharedPool) Healthy() bool { return !s.down.Load() }

func (s *sharedPool) gate() error {
	if s.down.Load() {
		return pool.ErrUnavailable
	}
	return nil
}

func (s *sharedPool) Register(a pool.Address, w int) (bool, error) {
	if err := s.gate(); err != nil {
		return false, err
	}
	return s.Pool.Register(a, w)
}

func (s *sharedPool) Heartbeat(key string, w int) (bool, error) {
	if _, ok := s.Pool.Lookup(key); ok {
		if err := s.gate(); err != nil {
			return true, err
		}
	}
	return s.Pool.Heartbeat(key, w)
}

func (s *sharedPool) Deregister(key string) error { return cmpErr(s.gate(), s.Pool.Deregister, key) }
func (s *sharedPool) Drain(key string) error      { return cmpErr(s.gate(), s.Pool.Drain, key) }
func (s *sharedPool) Undrain(key string) error    { return cmpErr(s.gate(), s.Pool.Undrain, key) }

func cmpErr(gate error, op func(string) error, key string) error {
	if gate != nil {
		return gate
	}
	return op(key)
}

func statusOf(t *testing.T, a *API) map[string]any {
	t.Helper()
	w := req{target: "/upstream/status"}.do(t, a.Handler())
	var reply map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &reply); err != nil {
		t.Fatal(err)
	}
	return reply
}

func TestSharedRegistryUnavailableIs503(t *testing.T) {
	a, p := newAPI(t, nil)
	sp := &sharedPool{Pool: p}
	a.Registry, a.Shared = sp, sp
	h := a.Handler()
	check(t, a, h, req{target: "/upstream/add?host=127.0.0.1&port=8080"}, http.StatusOK)
	if st := statusOf(t, a); st["registry"] != "etcd" || st["registry_healthy"] != true {
		t.Fatalf("status with the registry up: registry %v, healthy %v", st["registry"], st["registry_healthy"])
	}

	sp.down.Store(true)
	for _, target := range []string{
		"/upstream/add?host=127.0.0.1&port=8080", // a heartbeat
		"/upstream/add?host=127.0.0.1&port=8081", // a new backend
		"/upstream/drain?host=127.0.0.1&port=8080",
		"/upstream/undrain?host=127.0.0.1&port=8080",
		"/upstream/remove?host=127.0.0.1&port=8080",
	} {
		reply := check(t, a, h, req{target: target}, http.StatusServiceUnavailable)
		if msg, _ := reply["error"].(string); !strings.Contains(msg, "unavailable") {
			t.Errorf("%s: error %q, want one that says the registry is unavailable", target, msg)
		}
	}
	if st := statusOf(t, a); st["registry_healthy"] != false || st["total"] != float64(1) {
		t.Fatalf("status with the registry down: healthy %v, total %v; want false and the last set", st["registry_healthy"], st["total"])
	}
}

func TestMemoryRegistryStatusAndGauge(t *testing.T) {
	a, p := newAPI(t, nil)
	m, err := NewMetrics(p)
	if err != nil {
		t.Fatal(err)
	}
	a.Metrics = m
	a.Overview = &Overview{}
	if st := statusOf(t, a); st["registry"] != "memory" || st["registry_healthy"] != true {
		t.Fatalf("status: registry %v, healthy %v; want memory, true", st["registry"], st["registry_healthy"])
	}
	w := req{target: "/metrics"}.do(t, a.Handler())
	if !strings.Contains(w.Body.String(), `fulcrum_registry_healthy{registry="memory"} 1`) {
		t.Fatalf("metrics lack the registry gauge:\n%s", w.Body)
	}
	sp := &sharedPool{Pool: p}
	sp.down.Store(true)
	a.Registry, a.Shared = sp, sp
	w = req{target: "/metrics"}.do(t, a.Handler())
	if !strings.Contains(w.Body.String(), `fulcrum_registry_healthy{registry="etcd"} 0`) {
		t.Fatalf("metrics lack the unhealthy etcd gauge:\n%s", w.Body)
	}
}
