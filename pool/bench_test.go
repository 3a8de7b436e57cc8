package pool_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/fulcrumlb/fulcrum/pool"
)

// BenchmarkAcquireRelease measures one pick-and-count plus its release, the pool's whole cost
// per proxied connection, at several pool sizes, serially and from every core at once.
func BenchmarkAcquireRelease(b *testing.B) {
	for _, policy := range []pool.Policy{pool.LeastConn, pool.P2C, pool.Hash} {
		for _, n := range []int{10, 1000, 100000} {
			if policy == pool.Hash && n > 1000 {
				continue // rendezvous hashing is O(n) by design; see BenchmarkHashLarge
			}
			p := benchPool(b, policy, n)
			b.Run(fmt.Sprintf("%s/backends=%d/serial", policy.Name(), n), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					acquireRelease(b, p, client)
				}
			})
			b.Run(fmt.Sprintf("%s/backends=%d/parallel", policy.Name(), n), func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						acquireRelease(b, p, client)
					}
				})
			})
		}
	}
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
	// Some load, so that the heap is not trivially flat.
	for i := 0; i < n/2; i++ {
		if _, err := p.Acquire(client, nil); err != nil {
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
