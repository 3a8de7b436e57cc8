package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/bench"
)

// buildBench returns the fulcrum binary (built once, in TestMain): bench runs its backends
// and its fulcrum as children.
func buildBench(t *testing.T) string {
	t.Helper()
	needBinary(t)
	return fulcrumBin
}

// TestBenchCommand runs `fulcrum bench --json` end to end with child backends and a child
// fulcrum, then `bench compare` of direct and fulcrum, and checks what they print and write.
func TestBenchCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	exe := buildBench(t)
	t.Run("bench", func(t *testing.T) {
		cmd := exec.Command(exe, "bench", "--json", "--duration", "300ms", "--conns", "2", "--hold", "100",
			"--scenario", "connrate", "--scenario", "idle", "--scenario", "balance")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("bench: %v\n%s", err, stderr.String())
		}
		results := parseResultLines(t, out)
		if len(results) != 3 {
			t.Fatalf("%d result lines, want 3:\n%s", len(results), out)
		}
		if v := results[1].Metrics["rss_per_conn_kib"]; results[1].Scenario != bench.Idle || v == 0 {
			t.Errorf("idle against a child fulcrum has no memory figure: %+v", results[1])
		}
		if results[2].Metrics["balancer_agrees"] != 1 || results[2].Metrics["held"] != 100 {
			t.Errorf("balance: %+v", results[2])
		}
	})
	t.Run("compare", func(t *testing.T) {
		md := filepath.Join(t.TempDir(), "R.md")
		out, err := exec.Command(exe, "bench", "compare", "--peer", "direct", "--peer", "fulcrum", "--rounds", "3",
			"--duration", "200ms", "--conns", "2", "--scenario", "latency", "--out", md).CombinedOutput()
		if err != nil {
			t.Fatalf("compare: %v\n%s", err, out)
		}
		text, err := os.ReadFile(md)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(text), "| latency | requests_per_s (req/s) ↑ |") || !strings.Contains(string(text), "![") {
			t.Errorf("report:\n%s", text)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(md), "R.png")); err != nil {
			t.Errorf("chart: %v", err)
		}
		if n := strings.Count(string(out), "latency    "); n != 6 {
			t.Errorf("%d latency runs, want 3 rounds × 2 peers:\n%s", n, out)
		}
	})
}

func parseResultLines(t *testing.T, out []byte) []bench.Result {
	t.Helper()
	var rs []bench.Result
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var r bench.Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		rs = append(rs, r)
	}
	return rs
}
