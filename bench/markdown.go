package bench

import (
	"cmp"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
)

// WriteMarkdown writes the report as Markdown; chart is the chart's file name relative to the
// Markdown file ("" for none).
func (r *Report) WriteMarkdown(w io.Writer, chart string) error {
	var b strings.Builder
	title := r.Title
	if title == "" {
		title = "fulcrum side by side: " + strings.Join(r.Targets, ", ")
	}
	fmt.Fprintf(&b, "# %s\n\n", title)
	fmt.Fprintf(&b, "Run %s, %.0f s. ", r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Finished.Sub(r.Started).Seconds())
	if r.Command != "" {
		fmt.Fprintf(&b, "Re-run with `%s`.", r.Command)
	}
	b.WriteString("\n\n## Machine\n\n")
	m := r.Machine
	fmt.Fprintf(&b, "- CPUs: %d × %s\n- Kernel: %s\n- Go: %s\n- HAProxy: %s\n- nginx: %s\n- Load average at start: %s",
		m.CPUs, m.CPU, m.Kernel, m.Go, m.HAProxy, m.Nginx, m.LoadAvg)
	if m.LoadAvgEnd != "" {
		fmt.Fprintf(&b, "; at the end: %s", m.LoadAvgEnd)
	}
	b.WriteString(" (1, 5, 15 min; near 0 on a quiet machine)\n")
	fmt.Fprintf(&b, "- Load: %s (%s)\n", r.loadLine(), strings.Join(r.Targets, " → "))
	for _, s := range r.Setups {
		fmt.Fprintf(&b, "- Set-up of %s\n", s)
	}
	fmt.Fprintf(&b, "- %s\n", loopsLine(m.CPUs))
	b.WriteString("\n## Medians\n\n↑ higher is better, ↓ lower is better. A ratio is the first peer's median over the second's.\n\n")
	writeMarkdownTable(&b, r.table())
	if chart != "" {
		fmt.Fprintf(&b, "\n![relative to HAProxy](%s)\n", filepath.ToSlash(chart))
	}
	r.writeCPU(&b)
	r.writeMachineCPU(&b)
	r.writeKernelMemory(&b)
	r.writeGoals(&b)
	r.writeNotes(&b)
	r.writeRuns(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// loadLine says what the load was.
func (r *Report) loadLine() string {
	if r.Load != "" {
		return r.Load
	}
	c := r.Config
	return fmt.Sprintf("%s per timed run; throughput over %d connections; connrate %d workers; latency %d connections, latency1 one; "+
		"that client on %d thread(s); %d held connections; %d interleaved rounds",
		c.duration(), c.conns(), c.workers(), c.pingConns(), c.clientLoops(), c.hold(), r.Rounds)
}

func writeMarkdownTable(b *strings.Builder, rows [][]string) {
	for i, row := range rows {
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
		if i == 0 {
			b.WriteString(strings.Repeat("| --- ", len(row)) + "|\n")
		}
	}
}

// writeCPU writes the balancers' CPU with its spread over the rounds.
func (r *Report) writeCPU(b *strings.Builder) {
	writeSection(b, "Balancer CPU", "utime + stime of the balancer's processes (nginx: master and workers) from "+
		"`/proc/PID/stat` over each measured window, per operation and as a share of one core; "+
		"client_cpu_pct is the load generator's share and backends_cpu_pct the servers' behind the balancer. Median (lowest–highest) over the rounds; ratios of medians.", r.cpuTable())
}

// writeMachineCPU writes the whole machine's CPU per operation beside the balancers' own.
func (r *Report) writeMachineCPU(b *strings.Builder) {
	writeSection(b, "Machine CPU", "Busy time of every CPU (`/proc/stat`: user + nice + system + irq + softirq + steal) "+
		"over the same measured windows, per operation and as a share of one core (up to 100 × the CPU count): "+
		"the balancer, the load generator, the backends and the kernel's work for them, and anything else that ran, "+
		"so it is only as good as the machine is quiet. direct is the cost of the load and the backends alone; "+
		"a peer's figure minus direct's is what putting that balancer in the path costs the machine. "+
		"Median (lowest–highest) over the rounds; ratios of medians.", r.machineTable())
}

// writeSection writes a section titled title, its intro and its table when the table has a
// row beside its header, and says whether it did.
func writeSection(b *strings.Builder, title, intro string, rows [][]string) bool {
	if len(rows) < 2 {
		return false
	}
	fmt.Fprintf(b, "\n## %s\n\n%s\n\n", title, intro)
	writeMarkdownTable(b, rows)
	return true
}

// goal is one target for a fulcrum peer, checked against the medians.
type goal struct {
	text             string
	scenario, metric string
	higher           bool    // the subject must be >= the bound
	factor           float64 // the bound is factor × ref's median; zero: use bound
	bound            float64 // absolute bound when factor is zero
	subject, ref     string  // the peer checked and the one it is set against; empty: fulcrum, HAProxy
	// minus checks subject's median minus ref's against bound (what ref lacks costs at most
	// bound) instead of subject's median alone.
	minus bool
}

var goals = []goal{
	{text: "bulk upload ≥ 1.25× HAProxy's", scenario: Throughput, metric: "upload_mb_s", higher: true, factor: 1.25},
	{text: "bulk download ≥ 1.25× HAProxy's", scenario: Throughput, metric: "download_mb_s", higher: true, factor: 1.25},
	{text: "connections/s ≥ HAProxy's", scenario: Connrate, metric: "conns_per_s", higher: true, factor: 1},
	{text: "connections/s ≥ 0.95× HAProxy's (the floor)", scenario: Connrate, metric: "conns_per_s", higher: true, factor: 0.95},
	{text: "connection p99 ≤ HAProxy's", scenario: Connrate, metric: "p99_us", factor: 1},
	{text: "connection p99 ≤ 1.1× HAProxy's", scenario: Connrate, metric: "p99_us", factor: 1.1},
	{text: "CPU per connection ≤ HAProxy's", scenario: Connrate, metric: "cpu_us_per_conn", factor: 1},
	{text: "CPU per connection with metrics on within 3% of --metrics=false", scenario: Connrate, metric: "cpu_us_per_conn",
		factor: 1.03, ref: FulcrumNometrics},
	{text: "ping-pong (latency) req/s ≥ HAProxy's", scenario: Latency, metric: "requests_per_s", higher: true, factor: 1},
	{text: "ping-pong (latency) p99 ≤ HAProxy's", scenario: Latency, metric: "p99_us", factor: 1},
	{text: "ping-pong over one connection (latency1) req/s ≥ HAProxy's", scenario: Latency1, metric: "requests_per_s", higher: true, factor: 1},
	{text: "idle memory per connection ≤ HAProxy's", scenario: Idle, metric: "rss_per_conn_kib", factor: 1},
	{text: "idle memory ≤ 1.2 KiB per connection", scenario: Idle, metric: "rss_per_conn_kib", bound: 1.2},
	{text: "2 descriptors per idle connection", scenario: Idle, metric: "fds_per_conn", bound: 2},
	{text: "wrk req/s ≥ HAProxy's", scenario: Wrk, metric: "requests_per_s", higher: true, factor: 1},
	{text: "redis-benchmark req/s ≥ HAProxy's", scenario: Redis, metric: "requests_per_s", higher: true, factor: 1},
	{text: "pgbench tps ≥ HAProxy's", scenario: Pgbench, metric: "tps", higher: true, factor: 1},
	// The sockmap plane's targets.
	{text: "sockmap: bulk upload ≥ 0.8× direct", scenario: Throughput, metric: "upload_mb_s", higher: true, factor: 0.8, subject: FulcrumSockmap, ref: Direct},
	{text: "sockmap: bulk download ≥ 0.8× direct", scenario: Throughput, metric: "download_mb_s", higher: true, factor: 0.8, subject: FulcrumSockmap, ref: Direct},
	{text: "sockmap: latency1 req/s ≥ 0.5× direct", scenario: Latency1, metric: "requests_per_s", higher: true, factor: 0.5, subject: FulcrumSockmap, ref: Direct},
	{text: "sockmap: latency1 req/s ≥ 2.5× HAProxy's", scenario: Latency1, metric: "requests_per_s", higher: true, factor: 2.5, subject: FulcrumSockmap},
	{text: "sockmap: latency (32 connections) req/s ≥ 1.5× HAProxy's", scenario: Latency, metric: "requests_per_s", higher: true, factor: 1.5, subject: FulcrumSockmap},
	{text: "sockmap: connections/s within 5% of the epoll plane", scenario: Connrate, metric: "conns_per_s", higher: true, factor: 0.95, subject: FulcrumSockmap, ref: Fulcrum},
	{text: "sockmap: idle user-space memory per connection ≤ 1 KiB", scenario: Idle, metric: "rss_per_conn_kib", bound: 1, subject: FulcrumSockmap},
	// Many backends: what metrics cost with tens of thousands of backends.
	{text: "RSS of metrics per backend (fulcrum − --metrics=false) ≤ 1 KiB", scenario: ManyBackends, metric: "rss_per_backend_kib",
		bound: 1, ref: FulcrumNometrics, minus: true},
	{text: "one /metrics scrape ≤ 0.5 s", scenario: ManyBackends, metric: "scrape_s", bound: 0.5},
	{text: "heartbeats/s with metrics on ≥ 0.9× --metrics=false", scenario: ManyBackends, metric: "heartbeats_per_s",
		higher: true, factor: 0.9, ref: FulcrumNometrics},
}

// peers are the goal's subject and reference, with their defaults filled in.
func (g goal) peers() (subject, ref string) {
	return cmp.Or(g.subject, Fulcrum), cmp.Or(g.ref, HAProxy)
}

// goalBound is the bound a goal sets in this report.
func (r *Report) goalBound(g goal) (float64, bool) {
	if g.factor == 0 {
		return g.bound, true
	}
	_, ref := g.peers()
	h, ok := r.Median(g.scenario, ref, g.metric)
	return g.factor * h, ok
}

// applies says whether the goal belongs in this report: its scenario ran, and so did its
// subject and reference when they are not the standing pair (fulcrum against HAProxy,
// reported as not measured when missing).
func (r *Report) applies(g goal) bool {
	if !slices.Contains(r.scenarios(), g.scenario) {
		return false
	}
	subject, ref := g.peers()
	return (g.subject == "" || r.Has(subject)) && (g.ref == "" || (g.factor == 0 && !g.minus) || r.Has(ref))
}

func (r *Report) writeGoals(b *strings.Builder) {
	b.WriteString("\n## Targets\n\n")
	for _, g := range goals {
		if !r.applies(g) {
			continue
		}
		subject, ref := g.peers()
		f, ok := r.Median(g.scenario, subject, g.metric)
		bound, bok := r.goalBound(g)
		if g.minus {
			var base float64
			base, bok = r.Median(g.scenario, ref, g.metric)
			f -= base
		}
		if !ok || !bok {
			fmt.Fprintf(b, "- %s: not measured\n", g.text)
			continue
		}
		met := f >= bound
		if !g.higher {
			met = f <= bound
		}
		mark := "no"
		if met {
			mark = "yes"
		}
		who := subject
		if g.minus {
			who += " − " + ref
		}
		fmt.Fprintf(b, "- %s: **%s** (%s %s, bound %s)\n", g.text, mark, who, formatValue(f), formatValue(bound))
	}
}

func (r *Report) writeNotes(b *strings.Builder) {
	notes := append(append(append([]string{}, r.Skipped...), r.Errors...), r.Notes...)
	seen := map[string]bool{}
	for _, res := range r.Results {
		for _, n := range res.Notes {
			if res.Scenario == Balance && strings.HasPrefix(n, "backends saw") {
				continue // listed per run below
			}
			key := res.Target + " " + res.Scenario + ": " + n
			if !seen[key] && !strings.HasPrefix(n, "holding ") {
				seen[key] = true
				notes = append(notes, key)
			}
		}
	}
	if len(notes) == 0 {
		return
	}
	b.WriteString("\n## Notes\n\n")
	for _, n := range notes {
		b.WriteString("- " + n + "\n")
	}
}

// writeRuns lists every run's key figures so that the spread behind each median is visible.
func (r *Report) writeRuns(b *strings.Builder) {
	b.WriteString("\n<details><summary>Every run</summary>\n\n")
	b.WriteString("| round | scenario | target | figures |\n| --- | --- | --- | --- |\n")
	for _, res := range r.Results {
		var fs []string
		for _, m := range Metrics[res.Scenario] {
			if v, ok := res.Metrics[m.Name]; ok && m.Key {
				fs = append(fs, m.Name+"="+formatValue(v))
			}
		}
		if res.Scenario == Balance {
			for _, n := range res.Notes {
				if strings.HasPrefix(n, "backends saw") {
					fs = append(fs, n)
				}
			}
		}
		fmt.Fprintf(b, "| %d | %s | %s | %s |\n", res.Round, res.Scenario, res.Target, strings.Join(fs, ", "))
	}
	b.WriteString("\n</details>\n")
}

// loopsLine says how many event loops fulcrum ran on cpus cores, and how its default scales:
// one loop per core but one, so that the Go runtime's other goroutines (the admin API, health
// checks, the notifier) have a P of their own and a loop's P is never taken from it.
func loopsLine(cpus int) string {
	return fmt.Sprintf("fulcrum's event loops: %d here; the default is one per core but one, at least one "+
		"(GOMAXPROCS−1: 1 on 2 cores, 7 on 8, 63 on 64), leaving a P free for the admin API, health checks "+
		"and the Go runtime, so that no loop's P is ever taken while it waits. On 2 cores one loop beat two "+
		"(bench/EXPERIMENTS.md); beyond 8 cores, a listening socket per loop (SO_REUSEPORT) is yet to be measured "+
		"against the shared one", max(cpus-1, 1))
}
