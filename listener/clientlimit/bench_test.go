package clientlimit

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// clients100k are 100,000 distinct IPv4 clients.
func clients100k() []netip.Addr {
	out := make([]netip.Addr, 100_000)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	return out
}

// BenchmarkAdmitRelease is one connection's cost at 100,000 clients: all remembered
// (capacity above them) and churning (the default capacity, below them).
func BenchmarkAdmitRelease(b *testing.B) {
	cfg := Config{MaxConns: 10, Rate: Rate{PerSecond: 1e6, Burst: 1e6}}
	for name, capacity := range map[string]int{"fits": 131072, "churn": DefaultCapacity} {
		b.Run(name, func(b *testing.B) {
			cfg.Capacity = capacity
			tb := New(cfg)
			clients := clients100k()
			for _, a := range clients { // warm: arenas and maps grown
				tk, _ := tb.Admit(a, time.Unix(0, 0))
				tb.Release(tk)
			}
			now := time.Now()
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				tk, reason := tb.Admit(clients[i], now)
				if reason != "" {
					b.Fatal(reason)
				}
				tb.Release(tk)
				i = (i + 1) % len(clients)
			}
		})
	}
}

// BenchmarkAdmitReleaseParallel: the same from every P at once, spread over the shards.
func BenchmarkAdmitReleaseParallel(b *testing.B) {
	tb := New(Config{MaxConns: 10, Rate: Rate{PerSecond: 1e6, Burst: 1e6}, Capacity: 131072})
	clients := clients100k()
	now := time.Now()
	for _, a := range clients { // warm: arenas and maps grown
		tk, _ := tb.Admit(a, now)
		tb.Release(tk)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			tk, _ := tb.Admit(clients[i], now)
			tb.Release(tk)
			i = (i + 7919) % len(clients)
		}
	})
}

// BenchmarkTableMemory fills a default table with 100,000 distinct clients (past its
// capacity) and reports the heap it holds, per remembered client and in all.
func BenchmarkTableMemory(b *testing.B) {
	clients := clients100k()
	for b.Loop() {
		before := heapInUse()
		tb := New(Config{MaxConns: 10, Rate: Rate{PerSecond: 10, Burst: 20}})
		now := time.Now()
		for _, a := range clients {
			tk, _ := tb.Admit(a, now)
			tb.Release(tk)
		}
		after := heapInUse()
		b.ReportMetric(float64(tb.Len()), "clients")
		b.ReportMetric(float64(after-before)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(after-before)/float64(tb.Len()), "heap-B/client")
		runtime.KeepAlive(tb)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
