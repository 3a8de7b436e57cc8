package pool

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestExportImportRoundTrip(t *testing.T) {
	clock := time.Unix(1_700_000_000, 0)
	src := &Pool{TTL: time.Minute, Logger: quiet, Now: func() time.Time { return clock }}
	src.RegisterStatic(Address{Host: "10.0.0.1", Port: 80}, 1)
	src.Register(Address{Host: "10.0.0.2", Port: 80}, 3)
	src.Register(Address{Host: "::1", Port: 81}, 0)
	src.Register(Address{Host: "gone.example", Port: 82}, 0)
	if err := src.Deregister("gone.example:82"); err != nil {
		t.Fatal(err)
	}
	recs := src.Export()
	if len(recs) != 3 { // the removed one was idle, so it is forgotten
		t.Fatalf("exported %d records, want 3: %+v", len(recs), recs)
	}

	later := clock.Add(10 * time.Second)
	dst := &Pool{TTL: time.Minute, Logger: quiet, Now: func() time.Time { return later }}
	dst.RegisterStatic(Address{Host: "10.0.0.1", Port: 80}, 1)
	n, err := dst.Import(recs)
	if err != nil || n != 2 {
		t.Fatalf("Import = %d, %v; want 2, nil", n, err)
	}
	got := dst.Export()
	for i := range got {
		got[i].State = recs[i].State // the clock moved; states are recomputed
	}
	if !got[0].LastHeartbeat.Equal(later) {
		t.Fatalf("static backend's heartbeat = %v, want its registration time %v", got[0].LastHeartbeat, later)
	}
	got[0].LastHeartbeat = recs[0].LastHeartbeat
	if !slices.Equal(got, recs) {
		t.Fatalf("after import:\n got %+v\nwant %+v", got, recs)
	}
	// Restored backends are pickable at once.
	seen := map[string]bool{}
	for range 3 {
		b, err := dst.Acquire(netip.Addr{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		seen[b.Key()] = true
	}
	if len(seen) != 3 {
		t.Fatalf("picked %v, want all three backends", seen)
	}
}

func TestImportSkipsRemovedExpiredAndUnconfiguredStatic(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	old := now.Add(-time.Hour)
	p := &Pool{TTL: time.Minute, Logger: quiet, Now: func() time.Time { return now }}
	recs := []Record{
		{Host: "10.0.0.1", Port: 1, Weight: 1, Removed: true, LastHeartbeat: now, Created: now},
		{Host: "10.0.0.2", Port: 1, Weight: 1, Static: true, LastHeartbeat: now, Created: now},
		{Host: "10.0.0.3", Port: 1, Weight: 1, LastHeartbeat: old, Created: old},
	}
	n, err := p.Import(recs)
	if err != nil || n != 1 {
		t.Fatalf("Import = %d, %v; want 1 (the expired one, kept for the sweeper)", n, err)
	}
	if _, err := p.Acquire(netip.Addr{}, nil); err != ErrNoBackend {
		t.Fatalf("Acquire = %v, want ErrNoBackend: nothing restored is live", err)
	}
	if forgot := p.Sweep(); forgot != 1 || p.Len() != 0 {
		t.Fatalf("Sweep forgot %d, %d left; want 1, 0", forgot, p.Len())
	}
}

func TestImportRejectsInvalidWithoutChange(t *testing.T) {
	now := time.Now()
	good := Record{Host: "10.0.0.1", Port: 1, Weight: 1, LastHeartbeat: now, Created: now}
	cases := map[string]Record{
		"bad host":     {Host: "not a host", Port: 1, Weight: 1, LastHeartbeat: now, Created: now},
		"port 0":       {Host: "10.0.0.2", Port: 0, Weight: 1, LastHeartbeat: now, Created: now},
		"weight 0":     {Host: "10.0.0.2", Port: 1, Weight: 0, LastHeartbeat: now, Created: now},
		"weight 257":   {Host: "10.0.0.2", Port: 1, Weight: 257, LastHeartbeat: now, Created: now},
		"no heartbeat": {Host: "10.0.0.2", Port: 1, Weight: 1, Created: now},
		"duplicate":    good,
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			p := &Pool{Logger: quiet}
			if _, err := p.Import([]Record{good, bad}); err == nil {
				t.Fatal("Import accepted an invalid record")
			}
			if p.Len() != 0 {
				t.Fatalf("a failed Import left %d backends", p.Len())
			}
		})
	}
}

func TestOnChangeKinds(t *testing.T) {
	var kinds []ChangeKind
	p := &Pool{Logger: quiet}
	p.OnChange = func(k ChangeKind) {
		// Called with the lock released: the hook may read the pool.
		p.Export()
		kinds = append(kinds, k)
	}
	a := Address{Host: "10.0.0.1", Port: 1}
	p.Register(a, 0) // new
	p.Register(a, 0) // heartbeat
	p.Register(a, 2) // weight
	p.Register(a, 2) // heartbeat, same weight
	p.Deregister(a.Key())
	p.Deregister(a.Key()) // unknown: no change
	p.Register(a, 0)      // new again (it was idle, so forgotten)
	want := []ChangeKind{ChangeMembership, ChangeHeartbeat, ChangeWeight, ChangeHeartbeat, ChangeMembership, ChangeMembership}
	if !slices.Equal(kinds, want) {
		t.Fatalf("kinds = %v, want %v", kinds, want)
	}
}

// Draining is sticky across a restart: exported, restored, and the restored backend is not
// picked. Drain and undrain are reported as state changes.
func TestDrainingSurvivesExportImport(t *testing.T) {
	var kinds []ChangeKind
	src := &Pool{Logger: quiet, OnChange: func(k ChangeKind) { kinds = append(kinds, k) }}
	a, b := Address{Host: "10.0.0.1", Port: 1}, Address{Host: "10.0.0.2", Port: 1}
	src.Register(a, 0)
	src.Register(b, 0)
	if err := src.Drain(a.Key()); err != nil {
		t.Fatal(err)
	}
	src.Drain(a.Key()) // already draining: no change
	if want := []ChangeKind{ChangeMembership, ChangeMembership, ChangeState}; !slices.Equal(kinds, want) {
		t.Fatalf("kinds = %v, want %v", kinds, want)
	}
	recs := src.Export()
	if !recs[0].Draining || recs[0].State != StateDraining || recs[1].Draining {
		t.Fatalf("exported %+v; want the first draining", recs)
	}
	dst := &Pool{Logger: quiet}
	if _, err := dst.Import(recs); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		got, err := dst.Acquire(netip.Addr{}, nil)
		if err != nil || got.Key() != b.Key() {
			t.Fatalf("Acquire = %v, %v; want only %s (the other is draining)", got, err, b.Key())
		}
	}
	if err := dst.Undrain(a.Key()); err != nil {
		t.Fatal(err)
	}
	if got, _ := dst.Acquire(netip.Addr{}, nil); got.Key() != a.Key() {
		t.Fatalf("after undrain the least loaded pick is %s, want %s", got.Key(), a.Key())
	}
}
