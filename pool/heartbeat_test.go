package pool

import (
	"testing"
)

// TestHeartbeat: one locked call refreshes a backend that is still registered and leaves any
// other alone, so the caller registers it through every rule.
func TestHeartbeat(t *testing.T) {
	p := &Pool{Logger: quiet}
	a := Address{Host: "10.0.0.1", Port: 80}
	if known, err := p.Heartbeat(a.Key(), 0); known || err != nil {
		t.Fatalf("heartbeat of an unknown backend: known %v, err %v", known, err)
	}
	if p.Len() != 0 {
		t.Fatal("a heartbeat of an unknown backend created it")
	}
	p.Register(a, 1)
	if known, err := p.Heartbeat(a.Key(), 3); !known || err != nil {
		t.Fatalf("heartbeat of a known backend: known %v, err %v", known, err)
	}
	if s, _ := p.Lookup(a.Key()); s.Weight != 3 {
		t.Fatalf("weight %d after a heartbeat with weight 3", s.Weight)
	}
	if _, err := p.Heartbeat(a.Key(), MaxWeight+1); err == nil {
		t.Fatal("heartbeat with a weight out of range accepted")
	}
	b, _ := p.Acquire(a.IP, nil) // keeps the removed backend listed
	p.Deregister(a.Key())
	if known, _ := p.Heartbeat(a.Key(), 0); known {
		t.Fatal("heartbeat of a removed backend said known")
	}
	if s, _ := p.Lookup(a.Key()); s.State != StateRemoved {
		t.Fatalf("heartbeat revived a removed backend: %s", s.State)
	}
	p.Release(b)
}
