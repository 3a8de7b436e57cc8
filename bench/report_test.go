package bench

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseHAProxyStat(t *testing.T) {
	csv := "# pxname,svname,qcur,qmax,scur,smax\n" +
		"bench,FRONTEND,,,7,9\n" +
		"bench_backends,b0,0,0,3,4\n" +
		"bench_backends,b1,0,0,4,4\n" +
		"bench_backends,BACKEND,0,0,7,8\n"
	got, err := parseHAProxyStat(strings.NewReader(csv), []string{"127.0.0.1:1", "127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["127.0.0.1:1"] != 3 || got["127.0.0.1:2"] != 4 {
		t.Fatalf("counts %v, want 3 and 4", got)
	}
}

func TestPeerConfigs(t *testing.T) {
	backends := []string{"127.0.0.1:1", "127.0.0.1:2"}
	h := HAProxyConfig("127.0.0.1:9", "/tmp/s.sock", backends)
	for _, want := range []string{"mode tcp", "balance leastconn", "option splice-auto", "nbthread ", "maxpipes ",
		"bind 127.0.0.1:9", "server b0 127.0.0.1:1", "server b1 127.0.0.1:2", "stats socket /tmp/s.sock"} {
		if !strings.Contains(h, want) {
			t.Errorf("haproxy config lacks %q:\n%s", want, h)
		}
	}
	n := NginxConfig("load_module /x.so;\n", "/tmp/d", "127.0.0.1:9", backends)
	for _, want := range []string{"load_module /x.so;", "worker_processes ", "least_conn;", "zone ", "listen 127.0.0.1:9;",
		"server 127.0.0.1:1;", "proxy_half_close on;", "daemon off;", "worker_rlimit_nofile "} {
		if !strings.Contains(n, want) {
			t.Errorf("nginx config lacks %q:\n%s", want, n)
		}
	}
}

// sampleReport is a comparison of three rounds with made-up figures.
func sampleReport() *Report {
	r := &Report{Rounds: 3, Targets: []string{Direct, Fulcrum, HAProxy}, Started: time.Unix(0, 0), Finished: time.Unix(300, 0),
		Machine: Machine{CPUs: 2, CPU: "Test CPU", LoadAvg: "1.00 2.00 3.00", LoadAvgEnd: "4.00 5.00 6.00"}, Command: "fulcrum bench compare"}
	for round := 1; round <= 3; round++ {
		f := float64(round)
		r.Results = append(r.Results,
			Result{Scenario: Connrate, Target: Direct, Round: round, Metrics: map[string]float64{"conns_per_s": 1000 * f, "p99_us": 100}},
			Result{Scenario: Connrate, Target: Fulcrum, Round: round, Metrics: map[string]float64{"conns_per_s": 500 * f, "p99_us": 300,
				"cpu_us_per_conn": 100 * f, "cpu_pct": 80}},
			Result{Scenario: Connrate, Target: HAProxy, Round: round, Metrics: map[string]float64{"conns_per_s": 250 * f, "p99_us": 200,
				"cpu_us_per_conn": 100, "cpu_pct": 40 * f}},
			Result{Scenario: Idle, Target: Fulcrum, Round: round, Metrics: map[string]float64{"rss_per_conn_kib": 10}},
		)
	}
	return r
}

func TestReportMediansAndRatios(t *testing.T) {
	r := sampleReport()
	if m, _ := r.Median(Connrate, Fulcrum, "conns_per_s"); m != 1000 {
		t.Errorf("median %v, want 1000", m)
	}
	if v, _ := r.Ratio(Connrate, "conns_per_s", Fulcrum, HAProxy); v != 2 {
		t.Errorf("fulcrum/haproxy %v, want 2", v)
	}
	var b strings.Builder
	if err := r.WriteMarkdown(&b, "RESULTS.png"); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{"| scenario | metric | direct | fulcrum | haproxy | fulcrum ÷ haproxy | fulcrum ÷ direct |",
		"| connrate | conns_per_s (conn/s) ↑ | 2000 | 1000 | 500 | 2.00 | 0.50 |", "![relative to HAProxy](RESULTS.png)",
		"| connrate | cpu_us_per_conn (µs CPU/conn) ↓ | – | 200 | 100 | 2.00 | – |",
		"## Balancer CPU", "| scenario | metric | fulcrum | haproxy | fulcrum ÷ haproxy |\n",
		"| connrate | cpu_us_per_conn (µs CPU/conn) ↓ | 200 (100–300) | 100 | 2.00 |\n",
		"| connrate | cpu_pct (% of a core) ↓ | 80 | 80 (40–120) | 1.00 |\n",
		"connections/s ≥ HAProxy's: **yes** (fulcrum 1000, bound 500)", "CPU per connection ≤ HAProxy's: **no** (fulcrum 200, bound 100)",
		"idle memory per connection ≤ HAProxy's: not measured",
		"Test CPU", "fulcrum's event loops: 1 here;", "- Load average at start: 1.00 2.00 3.00; at the end: 4.00 5.00 6.00 (1, 5, 15 min"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "| idle | open_s") || strings.Contains(md, "ping-pong") {
		t.Errorf("a metric or target of a scenario that did not run is shown:\n%s", md)
	}
	var text strings.Builder
	r.WriteText(&text)
	for _, want := range []string{"medians of 3 rounds", "balancer CPU, median (lowest–highest) of 3 rounds:", "200 (100–300)"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
}

// TestReportTwoPlanes: with the goroutine plane beside the default one, the ratios set each
// against HAProxy and against each other.
func TestReportTwoPlanes(t *testing.T) {
	r := &Report{Rounds: 3, Targets: []string{Fulcrum, FulcrumGoroutine, HAProxy}}
	for round := 1; round <= 3; round++ {
		for name, v := range map[string]float64{Fulcrum: 300, FulcrumGoroutine: 150, HAProxy: 200} {
			r.Results = append(r.Results, Result{Scenario: Latency1, Target: name, Round: round,
				Metrics: map[string]float64{"requests_per_s": v}})
		}
	}
	rows := r.table()
	want := []string{"scenario", "metric", Fulcrum, FulcrumGoroutine, HAProxy,
		"fulcrum ÷ haproxy", "fulcrum-goroutine ÷ haproxy", "fulcrum ÷ fulcrum-goroutine"}
	if strings.Join(rows[0], "|") != strings.Join(want, "|") {
		t.Fatalf("head %q, want %q", rows[0], want)
	}
	if got := strings.Join(rows[1][5:], " "); got != "1.50 0.75 2.00" {
		t.Errorf("ratios %q, want 1.50 0.75 2.00", got)
	}
}

// TestReportJSONRoundTrip: the report the chart command reads is the one compare wrote.
func TestReportJSONRoundTrip(t *testing.T) {
	want := sampleReport()
	path := filepath.Join(t.TempDir(), "R.json")
	if err := want.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	got, err := ReadReport(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Results, want.Results) || !slices.Equal(got.Targets, want.Targets) ||
		got.Rounds != want.Rounds || got.Machine != want.Machine || !got.Started.Equal(want.Started) {
		t.Fatalf("read back %+v\nwant %+v", got, want)
	}
	if v, ok := got.Ratio(Connrate, "conns_per_s", Fulcrum, HAProxy); !ok || v != 2 {
		t.Errorf("ratio read back: %v %v, want 2", v, ok)
	}
	os.WriteFile(path, []byte("not json"), 0o644)
	if _, err := ReadReport(path); err == nil {
		t.Error("a file that is not a report was read without an error")
	}
}

// TestWithPlanes: the goroutine plane joins the default peers only when the binary has a
// --data-plane flag, right after fulcrum.
func TestWithPlanes(t *testing.T) {
	script := func(help string) string {
		path := filepath.Join(t.TempDir(), "fulcrum")
		if err := os.WriteFile(path, []byte("#!/bin/sh\necho '"+help+"'\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return path
	}
	with, without := script("--listen ADDR  --data-plane epoll|goroutine"), script("--listen ADDR")
	for _, tc := range []struct {
		name, exe   string
		peers, want []string
	}{
		{"has the flag", with, DefaultPeers, []string{Direct, Fulcrum, FulcrumGoroutine, HAProxy, Nginx}},
		{"lacks the flag", without, DefaultPeers, DefaultPeers},
		{"no fulcrum", with, []string{HAProxy}, []string{HAProxy}},
		{"already there", with, []string{FulcrumGoroutine, Fulcrum}, []string{FulcrumGoroutine, Fulcrum}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := withPlanes(tc.exe, tc.peers); strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("withPlanes = %v, want %v", got, tc.want)
			}
		})
	}
	if strings.Join(DefaultPeers, " ") != "direct fulcrum haproxy nginx" {
		t.Errorf("DefaultPeers changed: %v", DefaultPeers)
	}
}

// TestReportSockmapYardstickColumns: the in-kernel prototype gets its ratio columns against
// HAProxy, fulcrum-sockmap and direct, each only when both of its peers ran.
func TestReportSockmapYardstickColumns(t *testing.T) {
	cols := func(targets ...string) string {
		var out []string
		for _, c := range (&Report{Targets: targets}).ratioColumns() {
			out = append(out, c[0]+" ÷ "+c[1])
		}
		return strings.Join(out, ", ")
	}
	if got, want := cols(Direct, FulcrumSockmap, SockmapYardstick, HAProxy), "fulcrum-sockmap ÷ haproxy, sockmap-yardstick ÷ haproxy, "+
		"fulcrum-sockmap ÷ sockmap-yardstick, fulcrum-sockmap ÷ direct, sockmap-yardstick ÷ direct"; got != want {
		t.Errorf("columns:\n got %s\nwant %s", got, want)
	}
	if got := cols(FulcrumSockmap, SockmapYardstick); got != "fulcrum-sockmap ÷ sockmap-yardstick" {
		t.Errorf("without direct and HAProxy: %s", got)
	}
	if got := cols(Fulcrum, SockmapYardstick); got != "" {
		t.Errorf("without fulcrum-sockmap, direct and HAProxy: %s", got)
	}
}
