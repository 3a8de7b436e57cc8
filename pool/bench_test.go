package pool_test

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// BenchmarkAcquireRelease measures one pick-and-count plus its release, the pool's whole cost
// per proxied connection, at several pool sizes, serially and from every core at once. Each
// pick comes from another client address, so that the hashing policies read the whole table.
func BenchmarkAcquireRelease(b *testing.B) {
	for _, policy := range []pool.Policy{pool.LeastConn, pool.P2C, pool.Maglev, pool.RoundRobin, pool.Hash} {
		for _, n := range []int{10, 1000, 100000} {
			if policy == pool.Hash && n > 1000 {
				continue // rendezvous hashing is O(n) by design; see BenchmarkHashLarge
			}
			// One pool for both runs, built only when a run is selected.
			b.Run(fmt.Sprintf("%s/backends=%d", policy.Name(), n), func(b *testing.B) {
				p := benchPool(b, policy, n)
				b.Run("serial", func(b *testing.B) { acquireReleaseSerial(b, p) })
				b.Run("parallel", func(b *testing.B) { acquireReleaseParallel(b, p) })
			})
		}
	}
}

func acquireReleaseSerial(b *testing.B, p *pool.Pool) {
	cpu := startCPU()
	for i := 0; i < b.N; i++ {
		acquireRelease(b, p, clientNo(uint32(i)))
	}
	cpu.report(b)
}

func acquireReleaseParallel(b *testing.B, p *pool.Pool) {
	var goroutines atomic.Uint32
	cpu := startCPU()
	b.RunParallel(func(pb *testing.PB) {
		i := goroutines.Add(1) << 24 // each goroutine its own run of addresses
		for pb.Next() {
			acquireRelease(b, p, clientNo(i))
			i++
		}
	})
	cpu.report(b)
}

// cpuClock measures the CPU time the process spends over a benchmark loop, reported as
// cpu-ns/op next to ns/op: on a shared machine ns/op also counts the time other processes
// held the cores, CPU time does not. In a parallel run it sums every core's time.
type cpuClock struct{ start time.Duration }

func startCPU() cpuClock { return cpuClock{start: processCPU()} }

func (c cpuClock) report(b *testing.B) {
	if c.start >= 0 && b.N > 0 {
		b.ReportMetric(float64(processCPU()-c.start)/float64(b.N), "cpu-ns/op")
	}
}

// clientNo is the i-th of 2^32 client addresses, spread over 10.0.0.0/8 and beyond.
func clientNo(i uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(10 + i>>24), byte(i >> 16), byte(i >> 8), byte(i)})
}

// BenchmarkHashLarge shows the O(n) cost of rendezvous hashing over 100,000 backends, one new
// client address per pick.
func BenchmarkHashLarge(b *testing.B) {
	p := benchPool(b, pool.Hash, 100000)
	for i := 0; i < b.N; i++ {
		acquireRelease(b, p, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
}

func benchPool(b *testing.B, policy pool.Policy, n int) *pool.Pool {
	b.Helper()
	p := &pool.Pool{Policy: policy, Logger: quiet}
	for i := 0; i < n; i++ {
		a := pool.Address{Host: fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255), Port: 80}
		if _, err := p.Register(a, 1+i%3); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.WaitTable(b.Context()); err != nil {
		b.Fatal(err)
	}
	// Some load, so that the heap is not trivially flat.
	for i := 0; i < n/2; i++ {
		if _, err := p.Acquire(clientNo(uint32(i)), nil); err != nil {
			b.Fatal(err)
		}
	}
	return p
}

func acquireRelease(b *testing.B, p *pool.Pool, c netip.Addr) {
	be, err := p.Acquire(c, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Release(be); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkConnectionPoolCost is what a proxied connection asks of the pool on both planes:
// the pick, the report of its successful dial (passive health), and the release.
func BenchmarkConnectionPoolCost(b *testing.B) {
	p := benchPool(b, pool.LeastConn, 1000)
	one := func(c netip.Addr) {
		be, err := p.Acquire(c, nil)
		if err != nil {
			b.Fatal(err)
		}
		p.ReportDial(be, nil)
		if err := p.Release(be); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("serial", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			one(clientNo(uint32(i)))
		}
	})
	b.Run("parallel", func(b *testing.B) {
		var n atomic.Uint32
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				one(clientNo(n.Add(1)))
			}
		})
	})
}
