package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fulcrumlb/fulcrum/pool"
)

func newTestStore(t *testing.T) (*stateStore, *pool.Pool, string) {
	t.Helper()
	log := quiet
	path := filepath.Join(t.TempDir(), "state.json")
	p := &pool.Pool{Logger: log}
	s := newStateStore(path, []*servicePool{{cfg: serviceConfig{name: pool.DefaultService}, pool: p}}, log)
	p.OnChange = s.onChange
	return s, p, path
}

func savedKeys(t *testing.T, path string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return map[string]bool{}
	}
	if err != nil {
		t.Fatal(err)
	}
	byService, err := decodeState(data)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, r := range byService[pool.DefaultService] {
		keys[pool.Address{Host: r.Host, Port: r.Port}.Key()] = true
	}
	return keys
}

// A membership change is on disk when Register returns; a heartbeat waits for the next flush;
// a frozen store (a successor owns the file) writes nothing until thawed.
func TestStateStoreSavesMembershipSynchronously(t *testing.T) {
	s, p, path := newTestStore(t)
	a := pool.Address{Host: "10.0.0.1", Port: 80}
	p.Register(a, 0)
	if !savedKeys(t, path)[a.Key()] {
		t.Fatal("a new backend is not in the state file when Register returns")
	}
	before, _ := os.ReadFile(path)
	p.Register(a, 0) // heartbeat only
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("a heartbeat was saved synchronously; it should wait for the once-a-second flush")
	}
	s.flush()
	if after, _ := os.ReadFile(path); string(after) == string(before) {
		t.Fatal("flush did not save the heartbeat")
	}

	s.freeze()
	b := pool.Address{Host: "10.0.0.2", Port: 80}
	p.Register(b, 0)
	if savedKeys(t, path)[b.Key()] {
		t.Fatal("a frozen store saved")
	}
	s.thaw()
	if !savedKeys(t, path)[b.Key()] {
		t.Fatal("thaw did not save what changed while frozen")
	}
	if err := p.Deregister(a.Key()); err != nil {
		t.Fatal(err)
	}
	if savedKeys(t, path)[a.Key()] {
		t.Fatal("a removed backend is still in the state file when Deregister returns")
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("the state directory holds %d entries; temporary files were left behind", len(ents))
	}
}

// A save that fails (the directory is gone) is logged, not fatal, and the next change retries.
func TestStateStoreSurvivesFailedSave(t *testing.T) {
	s, p, path := newTestStore(t)
	dir := filepath.Dir(path)
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	p.Register(pool.Address{Host: "10.0.0.1", Port: 80}, 0)
	if !s.failed {
		t.Fatal("the failed save was not noticed")
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p.Register(pool.Address{Host: "10.0.0.2", Port: 80}, 0)
	if keys := savedKeys(t, path); len(keys) != 2 {
		t.Fatalf("after the directory came back the file holds %v; want both backends", keys)
	}
}
