package pool

import (
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMaxBackendsConcurrent: the cap is checked under the registry lock, so a burst of new
// backends never gets one past it, and known backends keep heartbeating.
func TestMaxBackendsConcurrent(t *testing.T) {
	p := &Pool{MaxBackends: 10, Logger: quiet}
	var created, full atomic.Int32
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := p.Register(Address{Host: "198.51.100.7", Port: 1000 + i}, 1)
			switch {
			case errors.Is(err, ErrRegistryFull):
				full.Add(1)
			case err != nil:
				t.Error(err)
			case ok:
				created.Add(1)
			}
		}()
	}
	wg.Wait()
	if created.Load() != 10 || full.Load() != 90 || p.Len() != 10 {
		t.Fatalf("created %d, full %d, len %d", created.Load(), full.Load(), p.Len())
	}
	for _, s := range p.Snapshot() {
		if _, err := p.Register(s.Address, 0); err != nil {
			t.Errorf("heartbeat of %s: %v", s.Key, err)
		}
	}
	if err := p.RegisterStatic(Address{Host: "198.51.100.8", Port: 1}, 1); err != nil {
		t.Errorf("static backend refused: %v", err)
	}
}

func TestDialAddress(t *testing.T) {
	cases := []struct {
		addr Address
		want string
	}{
		{Address{Host: "svc.example", Port: 80, IP: netip.MustParseAddr("198.51.100.7")}, "198.51.100.7:80"},
		{Address{Host: "svc.example", Port: 80, IP: netip.MustParseAddr("2001:db8::7")}, "[2001:db8::7]:80"},
		{Address{Host: "svc.example", Port: 80}, "svc.example:80"},
		{Address{Host: "::1", Port: 80}, "[::1]:80"},
	}
	for _, c := range cases {
		b := newBackend(c.addr, 1, false, time.Now())
		if got := b.DialAddress(); got != c.want {
			t.Errorf("%+v dials %s, want %s", c.addr, got, c.want)
		}
		if b.Key() != c.addr.Key() || b.Key() != (Address{Host: c.addr.Host, Port: c.addr.Port}).Key() {
			t.Errorf("key %s depends on the IP", b.Key())
		}
	}
}

func TestParseHostNumericNames(t *testing.T) {
	for _, s := range []string{"0177.0.0.1", "0x7f000001", "0X7F.0.0.1", "127.1", "2130706433", "a.0x1f", "1.2.3.4.5", "0x", "0X"} {
		if h, err := ParseHost(s); err == nil {
			t.Errorf("ParseHost(%q) = %q, want an error", s, h)
		}
	}
	for _, s := range []string{"0xg", "0xg.com", "a0x1", "x1.example"} {
		if _, err := ParseHost(s); err != nil {
			t.Errorf("ParseHost(%q): %v", s, err)
		}
	}
}

func TestParsePortStrict(t *testing.T) {
	for _, s := range []string{"+1", "0x50", "8080abc", "1e3", " 80", "80 ", "080", "0", "65536", "-1", "", "८०"} {
		if n, err := ParsePort(s); err == nil {
			t.Errorf("ParsePort(%q) = %d, want an error", s, n)
		}
	}
	for _, s := range []string{"1", "80", "65535"} {
		if _, err := ParsePort(s); err != nil {
			t.Errorf("ParsePort(%q): %v", s, err)
		}
	}
}
