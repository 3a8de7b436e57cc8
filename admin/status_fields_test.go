package admin_test

import (
	"encoding/json"
	"testing"

	"github.com/fulcrumlb/fulcrum/pool"
)

// statusEntry is one /upstream/status entry with the fields these tests read.
type statusEntry struct {
	Host       string `json:"host"`
	Port       int    `json:"port"`
	State      string `json:"state"`
	Static     *bool  `json:"static"`
	TotalConns uint64 `json:"total_conns"`
	LastError  string `json:"last_error"`
}

func statusEntries(t *testing.T, base string) map[string]statusEntry {
	t.Helper()
	_, raw := opsReadStatus(t, base)
	var servers []statusEntry
	if err := json.Unmarshal(raw["servers"], &servers); err != nil {
		t.Fatal(err)
	}
	out := map[string]statusEntry{}
	for _, s := range servers {
		out[pool.Address{Host: s.Host, Port: s.Port}.Key()] = s
	}
	return out
}

// Every status entry says whether its backend is static (configured) or came by heartbeat,
// whatever its state.
func TestStatusStatic(t *testing.T) {
	static, dyn := opsEcho(t), opsEcho(t)
	rig := newOpsMetricsRig(t, static)
	if _, err := rig.pool.Register(dyn, 1); err != nil {
		t.Fatal(err)
	}
	if err := rig.pool.Drain(static.Key()); err != nil { // state draining, still static
		t.Fatal(err)
	}
	got := statusEntries(t, rig.admin)
	for key, want := range map[string]bool{static.Key(): true, dyn.Key(): false} {
		if s := got[key].Static; s == nil || *s != want {
			t.Errorf("%s (state %s): static %v, want %v", key, got[key].State, s, want)
		}
	}
}

// total_conns counts the connections given to a backend, a failed dial included, where the
// routed counter counts only dialed ones; last_error says why the backend went down.
func TestStatusTotalConnsCountsFailedDials(t *testing.T) {
	dead := opsDeadAddress(t)
	rig := newOpsMetricsRig(t, dead)
	opsRefused(t, rig.proxy)
	opsEventually(t, "the dial failure reported", func() bool {
		return statusEntries(t, rig.admin)[dead.Key()].State == string(pool.StateDown)
	})
	s := statusEntries(t, rig.admin)[dead.Key()]
	if s.TotalConns != 1 || s.LastError == "" {
		t.Errorf("after one failed dial: total_conns %d, last_error %q; want 1 and the dial's error", s.TotalConns, s.LastError)
	}
	if v := opsValue(rig.scrape(t), "fulcrum_backend_connections_routed_total", opsBackend(dead)); v > 0 {
		t.Errorf("routed %v, want none", v)
	}
}
