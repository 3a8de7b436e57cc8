package clientlimit

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 6, 21, 0, 0, 0, time.UTC)

func addr(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestMaxConnsPerClient: 50 concurrent connections from one address with a limit of 10: 10
// admitted, 40 refused for "conns"; a second address is unaffected; counts go back to 0.
func TestMaxConnsPerClient(t *testing.T) {
	tb := New(Config{MaxConns: 10})
	one := addr(t, "198.51.100.7")
	var mu sync.Mutex
	var tickets []Ticket
	refused := map[string]int{}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			tk, reason := tb.Admit(one, t0)
			mu.Lock()
			defer mu.Unlock()
			if reason != "" {
				refused[reason]++
				return
			}
			tickets = append(tickets, tk)
		})
	}
	wg.Wait()
	if len(tickets) != 10 || refused[ReasonConns] != 40 || len(refused) != 1 {
		t.Fatalf("admitted %d, refused %v; want 10 admitted, 40 refused for conns", len(tickets), refused)
	}
	if _, reason := tb.Admit(addr(t, "198.51.100.8"), t0); reason != "" {
		t.Fatalf("a second address was refused: %s", reason)
	}
	top := tb.Top(10)
	if len(top) != 2 || top[0].Open != 10 || top[0].Addr.String() != "198.51.100.7/32" || top[1].Open != 1 {
		t.Fatalf("top %v", top)
	}
	for _, tk := range tickets {
		if err := tb.Release(tk); err != nil {
			t.Fatal(err)
		}
	}
	if err := tb.Release(tickets[0]); !errors.Is(err, ErrReleaseBug) {
		t.Fatalf("a second release: %v, want the release bug", err)
	}
	if top := tb.Top(10); len(top) != 1 || top[0].Addr.String() != "198.51.100.8/32" {
		t.Fatalf("after release, top %v", top)
	}
}

// TestRateStorm: a storm of 1000 connections in one instant from one client gets its burst
// through; a second later, its rate; another client has its own bucket.
func TestRateStorm(t *testing.T) {
	tb := New(Config{Rate: Rate{PerSecond: 10, Burst: 20}})
	storm := func(a netip.Addr, now time.Time) (admitted int) {
		for range 1000 {
			tk, reason := tb.Admit(a, now)
			switch reason {
			case "":
				admitted++
				tb.Release(tk)
			case ReasonRate:
			default:
				t.Fatalf("refused for %s", reason)
			}
		}
		return admitted
	}
	a := addr(t, "203.0.113.1")
	if n := storm(a, t0); n != 20 {
		t.Fatalf("first storm: %d admitted, want the burst of 20", n)
	}
	if n := storm(a, t0.Add(time.Second)); n != 10 {
		t.Fatalf("a second later: %d admitted, want the rate of 10", n)
	}
	if n := storm(a, t0.Add(time.Hour)); n != 20 {
		t.Fatalf("an hour later: %d admitted, want the burst of 20 (the bucket holds no more)", n)
	}
	if n := storm(addr(t, "203.0.113.2"), t0); n != 20 {
		t.Fatalf("another client: %d admitted, want its own burst of 20", n)
	}
}

// TestCapacityBounded: 100,000 distinct addresses leave the table within its capacity, and a
// client with an open connection is never forgotten: its count stays exact.
func TestCapacityBounded(t *testing.T) {
	const capacity = 4096
	tb := New(Config{MaxConns: 1, Rate: Rate{PerSecond: 1, Burst: 1}, Capacity: capacity})
	held := addr(t, "192.0.2.1")
	if _, reason := tb.Admit(held, t0); reason != "" {
		t.Fatal(reason)
	}
	for i := range 100_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		tk, reason := tb.Admit(a, t0)
		if reason != "" {
			t.Fatalf("client %v refused: %s", a, reason)
		}
		tb.Release(tk)
	}
	if n := tb.Len(); n > capacity {
		t.Fatalf("%d clients remembered, capacity %d", n, capacity)
	}
	if _, reason := tb.Admit(held, t0.Add(time.Minute)); reason != ReasonConns {
		t.Fatalf("the client holding a connection was forgotten: admitted again (%q)", reason)
	}
}

// TestShardGrowsForOpenClients: when every remembered client has an open connection, the
// table keeps them all rather than lose a count.
func TestShardGrowsForOpenClients(t *testing.T) {
	tb := New(Config{MaxConns: 1, Capacity: 1, Shards: 1})
	var tickets []Ticket
	for i := range 10 {
		tk, reason := tb.Admit(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), t0)
		if reason != "" {
			t.Fatal(reason)
		}
		tickets = append(tickets, tk)
	}
	if n := tb.Len(); n != 10 {
		t.Fatalf("%d clients remembered, want the 10 with open connections", n)
	}
	for _, tk := range tickets {
		if err := tb.Release(tk); err != nil {
			t.Fatal(err)
		}
	}
	tb.Admit(addr(t, "10.0.1.1"), t0)
	if n := tb.Len(); n > 10 {
		t.Fatalf("%d clients remembered after a release", n)
	}
}

func TestIPv6ByPrefix64(t *testing.T) {
	tb := New(Config{MaxConns: 2})
	for i := range 2 {
		if _, reason := tb.Admit(addr(t, fmt.Sprintf("2001:db8:1:2::%x", i+1)), t0); reason != "" {
			t.Fatal(reason)
		}
	}
	if _, reason := tb.Admit(addr(t, "2001:db8:1:2:ffff:ffff:ffff:ffff"), t0); reason != ReasonConns {
		t.Fatalf("a third address of the same /64: %q, want conns", reason)
	}
	if _, reason := tb.Admit(addr(t, "2001:db8:1:3::1"), t0); reason != "" {
		t.Fatalf("another /64: %q", reason)
	}
	if top := tb.Top(1); top[0].Addr.String() != "2001:db8:1:2::/64" || top[0].Open != 2 {
		t.Fatalf("top %v", top)
	}
	mapped := New(Config{MaxConns: 1})
	mapped.Admit(addr(t, "::ffff:192.0.2.9"), t0)
	if _, reason := mapped.Admit(addr(t, "192.0.2.9"), t0); reason != ReasonConns {
		t.Fatalf("an IPv4-mapped address is its IPv4 client: %q", reason)
	}
}

func TestZeroConfigAdmitsAll(t *testing.T) {
	tb := New(Config{})
	tk, reason := tb.Admit(addr(t, "192.0.2.1"), t0)
	if reason != "" || tk != (Ticket{}) || tb.Release(tk) != nil || tb.Len() != 0 {
		t.Fatalf("the zero config tracked or refused: %q %v", reason, tk)
	}
}
