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
		if m := results[0].Metrics; !(m["cpu_us_per_conn"] > 0) || !(m["backends_cpu_pct"] > 0) || !(m["client_cpu_pct"] > 0) {
			t.Errorf("connrate against a child fulcrum and child backends lacks a CPU figure: %v", m)
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
		drawChart(t, string(out))
		if _, err := os.Stat(filepath.Join(filepath.Dir(md), "R.png")); err != nil {
			t.Errorf("chart: %v", err)
		}
		if n := strings.Count(string(out), "latency    "); n != 6 {
			t.Errorf("%d latency runs, want 3 rounds × 2 peers:\n%s", n, out)
		}
	})
}

// drawChart runs the chart command compare's output names (built from ../fulcrum-chart), as
// bench/compare.sh does.
func drawChart(t *testing.T, compareOut string) {
	t.Helper()
	var argv []string
	for line := range strings.Lines(compareOut) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "chart: fulcrum-chart "); ok {
			argv = strings.Fields(rest)
		}
	}
	if argv == nil {
		t.Fatalf("compare did not say how to draw its chart:\n%s", compareOut)
	}
	bin := filepath.Join(t.TempDir(), "fulcrum-chart")
	if out, err := exec.Command("go", "build", "-o", bin, "../fulcrum-chart").CombinedOutput(); err != nil {
		t.Fatalf("build fulcrum-chart: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, argv...).CombinedOutput(); err != nil {
		t.Fatalf("fulcrum-chart %q: %v\n%s", argv, err, out)
	}
}

// TestBinaryLinksNoPlotting: the balancer's binary does not link the plotting library; the
// chart is fulcrum-chart's.
func TestBinaryLinksNoPlotting(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for dep := range strings.Lines(string(out)) {
		if strings.HasPrefix(dep, "gonum.org/") {
			t.Errorf("fulcrum links %s", strings.TrimSpace(dep))
		}
	}
}

// TestBenchReal runs `fulcrum bench real` for each suite whose tools are installed, through
// fulcrum and HAProxy, and checks that every run has its rate and the balancer's CPU.
func TestBenchReal(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real servers")
	}
	exe := buildBench(t)
	need := map[string][]string{"wrk": {"wrk", "nginx"}, "redis": {"redis-benchmark", "redis-server"}, "pgbench": {"pgbench"}}
	// Runs of 3 s, not 1 s: on a loaded machine sixteen pgbench clients can spend a whole second
	// connecting, and a run with no transaction is (rightly) an error of the benchmark.
	args := []string{"bench", "real", "--json", "--rounds", "3", "--duration", "3s", "--redis-requests", "20000"}
	var suites []string
	for _, s := range []string{"wrk", "redis", "pgbench"} {
		if installed(need[s]...) {
			suites = append(suites, s)
			args = append(args, "--suite", s)
		}
	}
	if len(suites) == 0 || !installed("haproxy") {
		t.Skip("no real client with its server, or no haproxy, is installed")
	}
	md := filepath.Join(t.TempDir(), "real.md")
	var stderr bytes.Buffer
	cmd := exec.Command(exe, append(args, "--out", md)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench real: %v\n%s\n%s", err, out, stderr.String())
	}
	runs := map[string]int{}
	for _, line := range strings.Split(string(out), "\n") {
		var r bench.Result
		if json.Unmarshal([]byte(line), &r) != nil || r.Scenario == "" {
			continue
		}
		runs[r.Scenario]++
		rate, perOp := r.Metrics["requests_per_s"], r.Metrics["cpu_us_per_req"]
		if r.Scenario == "pgbench" {
			rate, perOp = r.Metrics["tps"], r.Metrics["cpu_us_per_txn"]
		}
		if !(rate > 0) || !(perOp > 0) || r.Conns == 0 {
			t.Errorf("run %+v: want a rate, the balancer's CPU per operation and the connections", r)
		}
	}
	// With serve's --data-plane, fulcrum also runs as the fulcrum-goroutine peer.
	help, _ := exec.Command(exe, "serve", "--help").CombinedOutput()
	balancers, heading := 2, "# Real clients through fulcrum, haproxy, two servers behind each\n"
	if strings.Contains(string(help), "--data-plane") {
		balancers, heading = 3, "# Real clients through fulcrum, fulcrum-goroutine, haproxy, two servers behind each\n"
	}
	text, _ := os.ReadFile(md)
	if !strings.HasPrefix(string(text), heading) {
		t.Errorf("report heading:\n%s", text)
	}
	for _, s := range suites {
		if runs[s] == 0 && strings.Contains(string(out), "skipping "+s+": ") {
			t.Logf("%s skipped, as it says: %s", s, out) // e.g. PostgreSQL without a user to run as
			continue
		}
		if runs[s] != 3*balancers {
			t.Errorf("%s: %d runs, want 3 rounds × %d balancers\n%s", s, runs[s], balancers, out)
		}
		if !strings.Contains(string(text), "| "+s+" | ") {
			t.Errorf("report has no %s rows:\n%s", s, text)
		}
	}
}

// TestBenchComparePlanes: the fulcrum-goroutine peer runs fulcrum with
// --data-plane=goroutine when serve has that flag, and is skipped with the reason when not.
func TestBenchComparePlanes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	exe := buildBench(t)
	help, _ := exec.Command(exe, "serve", "--help").CombinedOutput()
	planes := strings.Contains(string(help), "--data-plane")
	out, err := exec.Command(exe, "bench", "compare", "--peer", "fulcrum-goroutine", "--peer", "direct", "--rounds", "3",
		"--duration", "200ms", "--scenario", "latency1", "--out", "").CombinedOutput()
	runs := strings.Count(string(out), "latency1   fulcrum-goroutine round")
	switch {
	case planes && (err != nil || runs != 3):
		t.Errorf("serve has --data-plane: want 3 runs of fulcrum-goroutine, got %d (%v):\n%s", runs, err, out)
	case !planes && (err != nil || runs != 0 || !strings.Contains(string(out), "skipping fulcrum-goroutine: ")):
		t.Errorf("serve lacks --data-plane: want fulcrum-goroutine skipped with the reason (%v):\n%s", err, out)
	}
}

// installed says whether every named program is in PATH or /usr/sbin.
func installed(names ...string) bool {
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if _, err := os.Stat(filepath.Join("/usr/sbin", n)); err != nil {
				return false
			}
		}
	}
	return true
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

// TestBenchManyBackends runs `bench many-backends` small: both fulcrums register every
// backend and renew them, only the one with metrics is scraped, and the report checks the
// issue's targets.
func TestBenchManyBackends(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	exe := buildBench(t)
	md := filepath.Join(t.TempDir(), "B.md")
	cmd := exec.Command(exe, "bench", "many-backends", "--count", "300", "--clients", "4", "--duration", "300ms",
		"--rounds", "1", "--json", "--out", md)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("many-backends: %v\n%s\n%s", err, out, stderr.String())
	}
	var results []bench.Result
	for line := range strings.Lines(string(out)) {
		if strings.HasPrefix(line, "{") {
			results = append(results, parseResultLines(t, []byte(line))...)
		}
	}
	if len(results) != 2 || results[0].Target != bench.Fulcrum || results[1].Target != bench.FulcrumNometrics {
		t.Fatalf("want one run of fulcrum then fulcrum-nometrics:\n%s", out)
	}
	for _, r := range results {
		m := r.Metrics
		if m["backends"] != 300 || !(m["heartbeats_per_s"] > 0) || !(m["registrations_per_s"] > 0) || m["errors"] != 0 {
			t.Errorf("%s: %v", r.Target, m)
		}
		if _, ok := m["cpu_us_per_heartbeat"]; !ok {
			t.Errorf("%s: no CPU per heartbeat: %v", r.Target, m)
		}
		if _, ok := m["rss_per_backend_kib"]; !ok {
			t.Errorf("%s: no RSS per backend: %v", r.Target, m)
		}
	}
	if !(results[0].Metrics["scrape_mb"] > 0) || !(results[0].Metrics["scrape_s"] > 0) {
		t.Errorf("metrics on: no scrape figure: %v", results[0].Metrics)
	}
	if _, ok := results[1].Metrics["scrape_s"]; ok {
		t.Errorf("--metrics=false was scraped: %v", results[1].Metrics)
	}
	text, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"RSS of metrics per backend (fulcrum − --metrics=false) ≤ 1 KiB: **",
		"one /metrics scrape ≤ 0.5 s: **", "heartbeats/s with metrics on ≥ 0.9× --metrics=false: **"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
}

// findYardstick is the yardstick's source folder: $FULCRUM_YARDSTICK, or
// shared/reference/evloop-yardstick in a folder above this one; empty when there is none.
func findYardstick() string { return findReference("FULCRUM_YARDSTICK", "evloop-yardstick") }

// findSockmapYardstick is the in-kernel prototype's source folder: $FULCRUM_SOCKMAP_YARDSTICK,
// or shared/reference/sockmap-yardstick in a folder above this one; empty when there is none
// (a clean clone).
func findSockmapYardstick() string {
	return findReference("FULCRUM_SOCKMAP_YARDSTICK", "sockmap-yardstick")
}

// findReference is $env when set, else the first shared/reference/name with a go.mod in this
// folder or one above it; empty when there is none.
func findReference(env, name string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	dir, _ := filepath.Abs(".")
	for {
		p := filepath.Join(dir, "shared", "reference", name)
		if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
			return p
		}
		up := filepath.Dir(dir)
		if up == dir {
			return ""
		}
		dir = up
	}
}

// TestBenchCompareNewPeers runs one short comparison of the yardstick (built from its
// folder), fulcrum-nometrics and, where the sockmap plane can run, fulcrum-sockmap, and
// checks that each ran every round and got its ratios.
func TestBenchCompareNewPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	exe := buildBench(t)
	peers := []string{"--peer", "fulcrum", "--peer", "fulcrum-nometrics"}
	want := []string{"fulcrum-nometrics"}
	ys := findYardstick()
	if ys == "" {
		t.Log("no yardstick folder (set FULCRUM_YARDSTICK): the yardstick peers are not run")
	} else {
		peers = append(peers, "--yardstick", ys, "--peer", "yardstick", "--peer", "yardstick-rawwait")
		want = append(want, "yardstick", "yardstick-rawwait")
	}
	if sockmapCheck() == nil {
		peers = append(peers, "--peer", "fulcrum-sockmap")
		want = append(want, "fulcrum-sockmap")
	} else {
		t.Logf("the sockmap plane cannot run here (%v): fulcrum-sockmap is not run", sockmapCheck())
	}
	md := filepath.Join(t.TempDir(), "R.md")
	args := append([]string{"bench", "compare", "--rounds", "3", "--duration", "200ms", "--scenario", "latency1", "--out", md}, peers...)
	out, err := exec.Command(exe, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("compare: %v\n%s", err, out)
	}
	text, _ := os.ReadFile(md)
	for _, name := range want {
		if n := strings.Count(string(out), "latency1   "+name+" round"); n != 3 {
			t.Errorf("%s: %d runs, want 3:\n%s", name, n, out)
		}
		if !strings.Contains(string(text), "- Set-up of "+name+": ") {
			t.Errorf("report does not say how %s ran:\n%s", name, text)
		}
	}
	if !strings.Contains(string(text), "fulcrum ÷ fulcrum-nometrics") || (ys != "" && !strings.Contains(string(text), "fulcrum ÷ yardstick")) {
		t.Errorf("report lacks the new ratio columns:\n%s", text)
	}
	if ys != "" && !strings.Contains(string(text), "EVL_LOOPS=1 EVL_RAWWAIT=0 GOMAXPROCS=2") {
		t.Errorf("report does not give the yardstick's set-up:\n%s", text)
	}
}

// TestBenchCompareSockmapYardstick runs one short comparison of the in-kernel prototype
// (built from its folder) beside fulcrum-sockmap and direct, where both the folder and the
// sockmap plane are found, and checks that it ran every round, that the report says how it
// ran and that its ratio columns are there.
func TestBenchCompareSockmapYardstick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	smy := findSockmapYardstick()
	if smy == "" {
		t.Log("no sockmap-yardstick folder (set FULCRUM_SOCKMAP_YARDSTICK): the peer is not run")
		return
	}
	if err := sockmapCheck(); err != nil {
		t.Logf("the sockmap plane cannot run here (%v): sockmap-yardstick is not run", err)
		return
	}
	exe := buildBench(t)
	md := filepath.Join(t.TempDir(), "R.md")
	out, err := exec.Command(exe, "bench", "compare", "--rounds", "3", "--duration", "200ms", "--scenario", "latency1",
		"--out", md, "--sockmap-yardstick", smy, "--peer", "direct", "--peer", "fulcrum-sockmap", "--peer", "sockmap-yardstick").CombinedOutput()
	if err != nil {
		t.Fatalf("compare: %v\n%s", err, out)
	}
	for _, name := range []string{"sockmap-yardstick", "fulcrum-sockmap"} {
		if n := strings.Count(string(out), "latency1   "+name+" round"); n != 3 {
			t.Errorf("%s: %d runs, want 3:\n%s", name, n, out)
		}
	}
	text, _ := os.ReadFile(md)
	for _, want := range []string{"- Set-up of sockmap-yardstick: `" + smy + "`, the in-kernel prototype: every connection goes into the kernel at once",
		"| fulcrum-sockmap ÷ sockmap-yardstick |", "| sockmap-yardstick ÷ direct |"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
}

// TestBenchCompareSockmapYardstickErrors: the peer asked for without --sockmap-yardstick, or
// with a path that does not exist, is skipped with a message naming the flag.
func TestBenchCompareSockmapYardstickErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	exe := buildBench(t)
	missing := filepath.Join(t.TempDir(), "missing")
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{nil, "skipping sockmap-yardstick: no sockmap-yardstick given (--sockmap-yardstick PATH: its binary, or its folder to build)"},
		{[]string{"--sockmap-yardstick", missing}, "skipping sockmap-yardstick: --sockmap-yardstick " + missing + ": "},
	} {
		args := append([]string{"bench", "compare", "--peer", "sockmap-yardstick", "--out", ""}, c.flags...)
		out, err := exec.Command(exe, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) || !strings.Contains(string(out), "no peer to compare") {
			t.Errorf("%q: %v, want it to fail saying %q:\n%s", c.flags, err, c.want, out)
		}
	}
}
