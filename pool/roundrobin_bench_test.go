package pool_test

import (
	"fmt"
	"testing"

	"github.com/fulcrumlb/fulcrum/pool"
)

// BenchmarkRoundRobinWeights shows what round robin's pick costs: a step per distinct weight,
// none per backend. 100,000 backends spread over 1, 16 or all 256 weights.
func BenchmarkRoundRobinWeights(b *testing.B) {
	for _, k := range []int{1, 16, pool.MaxWeight} {
		b.Run(fmt.Sprintf("weights=%d", k), func(b *testing.B) {
			p := &pool.Pool{Policy: pool.RoundRobin, Logger: quiet}
			for i := range 100000 {
				a := pool.Address{Host: fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255), Port: 80}
				if err := p.RegisterStatic(a, 1+i%k); err != nil {
					b.Fatal(err)
				}
			}
			cpu := startCPU()
			for i := 0; b.Loop(); i++ {
				acquireRelease(b, p, clientNo(uint32(i)))
			}
			cpu.report(b)
		})
	}
}
