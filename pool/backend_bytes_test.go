package pool

import (
	"net/netip"
	"sync"
	"testing"
)

// TestBackendBytes: bytes counted on a backend from many goroutines at once show in Snapshot,
// each direction apart, and survive the backend's removal and return.
func TestBackendBytes(t *testing.T) {
	p := &Pool{}
	a, err := ParseAddress("127.0.0.1:7000")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Register(a, 1); err != nil {
		t.Fatal(err)
	}
	b, err := p.Acquire(netip.Addr{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				b.Moved(true, 3)
				b.Moved(false, 5)
			}
		}()
	}
	wg.Wait()
	check := func(when string) {
		t.Helper()
		s := p.Snapshot()
		if len(s) != 1 || s[0].BytesIn != 24000 || s[0].BytesOut != 40000 {
			t.Fatalf("%s: snapshot %+v, want bytes in 24000 and out 40000", when, s)
		}
	}
	check("registered")
	if err := p.Deregister(a.Key()); err != nil {
		t.Fatal(err)
	}
	check("removed with a connection open")
	if _, err := p.Register(a, 1); err != nil {
		t.Fatal(err)
	}
	check("back")
	if err := p.Release(b); err != nil {
		t.Fatal(err)
	}
}
