package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/bench"
)

// TestChartFromReport: the chart of a saved report lands next to it by default, or at --out.
func TestChartFromReport(t *testing.T) {
	dir := t.TempDir()
	report := filepath.Join(dir, "R.json")
	rep := &bench.Report{Rounds: 3, Targets: []string{bench.Direct, bench.Fulcrum}, Results: []bench.Result{
		{Scenario: bench.Latency, Target: bench.Direct, Round: 1, Metrics: map[string]float64{"requests_per_s": 1000}},
		{Scenario: bench.Latency, Target: bench.Fulcrum, Round: 1, Metrics: map[string]float64{"requests_per_s": 800}},
	}}
	if err := rep.WriteJSON(report); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{report}, filepath.Join(dir, "R.png")},
		{[]string{"--out", filepath.Join(dir, "c.svg"), report}, filepath.Join(dir, "c.svg")},
	} {
		var stdout strings.Builder
		if err := run(tc.args, &stdout, io.Discard); err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if st, err := os.Stat(tc.want); err != nil || st.Size() < 1000 || !strings.Contains(stdout.String(), tc.want) {
			t.Errorf("%q: chart %s: %v %v; said %q", tc.args, tc.want, st, err, stdout.String())
		}
	}
}

// TestChartBadInput: every mistake gets a message that says what to give instead.
func TestChartBadInput(t *testing.T) {
	dir := t.TempDir()
	notJSON := filepath.Join(dir, "R.json")
	os.WriteFile(notJSON, []byte("| a markdown table |"), 0o644)
	for _, tc := range []struct {
		args []string
		says string
	}{
		{nil, "one report file"},
		{[]string{notJSON, notJSON}, "one report file"},
		{[]string{"--out", filepath.Join(dir, "c.jpg"), notJSON}, ".png or .svg"},
		{[]string{filepath.Join(dir, "missing.json")}, "read report"},
		{[]string{notJSON}, "not a report saved by fulcrum bench compare"},
	} {
		err := run(tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%q: %v, want an error saying %q", tc.args, err, tc.says)
		}
	}
}
