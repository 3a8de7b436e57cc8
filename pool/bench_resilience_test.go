package pool

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkAcquireReleaseResilience measures pick+release with the resilience machinery busy:
// 10% of backends down in backoff, 10% draining, 1% ramping in slow start, a per-backend limit.
func BenchmarkAcquireReleaseResilience(b *testing.B) {
	for _, n := range []int{10, 1000, 100_000} {
		p := resBusyPool(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				be, err := p.Acquire(netip.Addr{}, nil)
				if err != nil {
					b.Fatal(err)
				}
				p.Release(be)
			}
		})
		b.Run(fmt.Sprintf("%d-parallel", n), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					be, err := p.Acquire(netip.Addr{}, nil)
					if err != nil {
						b.Error(err)
						return
					}
					p.Release(be)
				}
			})
		})
	}
}

func resBusyPool(n int) *Pool {
	p := &Pool{Logger: quiet, MaxConnsPerBackend: 1 << 20}
	for i := range n {
		p.RegisterStatic(Address{Host: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Port: 80}, 1+i%4)
	}
	p.SlowStart = time.Hour
	i := 0
	for _, be := range p.backends {
		switch {
		case i%10 == 0:
			p.ReportDial(be, resRefused)
		case i%10 == 1:
			p.Drain(be.key)
		case i%100 == 2:
			p.mu.Lock()
			p.startRamp(be, p.now())
			p.mu.Unlock()
		}
		i++
	}
	return p
}
