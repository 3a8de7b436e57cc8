package chart

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fulcrumlb/fulcrum/bench"
)

func sampleReport() *bench.Report {
	r := &bench.Report{Rounds: 3, Targets: []string{bench.Direct, bench.Fulcrum, bench.HAProxy}}
	for round := 1; round <= 3; round++ {
		f := float64(round)
		r.Results = append(r.Results,
			bench.Result{Scenario: bench.Connrate, Target: bench.Direct, Round: round, Metrics: map[string]float64{"conns_per_s": 1000 * f, "p99_us": 100}},
			bench.Result{Scenario: bench.Connrate, Target: bench.Fulcrum, Round: round, Metrics: map[string]float64{"conns_per_s": 500 * f, "p99_us": 300}},
			bench.Result{Scenario: bench.Connrate, Target: bench.HAProxy, Round: round, Metrics: map[string]float64{"conns_per_s": 250 * f, "p99_us": 200}},
		)
	}
	return r
}

func TestWrite(t *testing.T) {
	for _, name := range []string{"chart.png", "chart.svg"} {
		path := filepath.Join(t.TempDir(), name)
		if err := Write(sampleReport(), path); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(path); err != nil || st.Size() < 1000 {
			t.Fatalf("%s: %v %v", name, st, err)
		}
	}
}
