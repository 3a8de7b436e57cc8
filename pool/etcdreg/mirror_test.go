package etcdreg

import (
	"testing"

	"github.com/fulcrumlb/fulcrum/pool"
)

// TestMirrorWritesAChangeOnce: the watch bringing back what this instance already wrote to its
// pool (Shared writes it as soon as etcd takes it) changes nothing; an entry that differs in
// weight or draining, or a backend the pool lacks, is written.
func TestMirrorWritesAChangeOnce(t *testing.T) {
	changes := 0
	p := &pool.Pool{Logger: quiet, OnChange: func(pool.ChangeKind) { changes++ }}
	m := &Mirror{Pools: map[string]*pool.Pool{"web": p}, Logger: quiet}
	web := func(weight int, draining bool) Entry {
		return Entry{Service: "web", HostPort: "127.0.0.1:8080", Weight: weight, Draining: draining}
	}
	// step applies a change and checks whether the pool changed: written is whether it must.
	step := func(what string, apply func(), written bool) {
		t.Helper()
		before := changes
		apply()
		if got := changes - before; (got > 0) != written {
			t.Errorf("%s: %d pool changes, want some: %v", what, got, written)
		}
	}
	a, _ := pool.ParseAddress("127.0.0.1:8080")
	step("Shared's local write", func() { p.Register(a, 2) }, true)
	step("the watch bringing it back", func() { m.Upsert(web(2, false)) }, false)
	step("a new weight from another instance", func() { m.Upsert(web(3, false)) }, true)
	step("Shared's local drain", func() { p.Drain(a.Key()) }, true)
	step("the watch bringing the drain back", func() { m.Upsert(web(3, true)) }, false)
	step("an undrain from another instance", func() { m.Upsert(web(3, false)) }, true)
	step("a backend another instance registered", func() {
		m.Upsert(Entry{Service: "web", HostPort: "127.0.0.1:8081", Weight: 1})
	}, true)
	if st, _ := p.Lookup(a.Key()); st.Weight != 3 || st.State != pool.StateUp {
		t.Fatalf("after the watch: %+v, want weight 3 and up", st)
	}
}
