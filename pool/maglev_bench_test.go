package pool

import (
	"fmt"
	"testing"
)

// BenchmarkMaglevBuild measures building a whole table, what a change of membership costs the
// builder goroutine (never a pick). B/op is the table, its bitmap and the permutations;
// table-MiB is what stays allocated.
func BenchmarkMaglevBuild(b *testing.B) {
	for _, n := range []int{10, 1000, 100_000} {
		b.Run(fmt.Sprintf("backends=%d", n), func(b *testing.B) {
			ms := tableMembersOf(n, 1, 2, 3)
			size := maglevSize(n, 0)
			members := make([]maglevMember, n)
			b.ReportAllocs()
			for b.Loop() {
				copy(members, ms)
				buildMaglev(members, size)
			}
			b.ReportMetric(float64(size*4+uint64(n)*8)/(1<<20), "table-MiB")
			b.ReportMetric(float64(size), "slots")
		})
	}
}

// BenchmarkMaglevMemberList measures copying the member list out of the registry, the part of
// a build done under the pool's lock, in batches of memberBatch backends (hold-ns is the
// time of one batch).
func BenchmarkMaglevMemberList(b *testing.B) {
	p := &Pool{Logger: quiet}
	for i := range 100_000 {
		p.RegisterStatic(Address{Host: fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255), Port: 80}, 1)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.mu.Lock()
		p.tableMembers()
		p.mu.Unlock()
	}
	batches := (len(p.backends) + memberBatch - 1) / memberBatch
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(batches), "hold-ns")
}
