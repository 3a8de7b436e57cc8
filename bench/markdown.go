package bench

import (
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
	b.WriteString("\n## Medians\n\n↑ higher is better, ↓ lower is better. A ratio is the first peer's median over the second's.\n\n")
	writeMarkdownTable(&b, r.table())
	if chart != "" {
		fmt.Fprintf(&b, "\n![relative to HAProxy](%s)\n", filepath.ToSlash(chart))
	}
	r.writeCPU(&b)
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
	rows := r.cpuTable()
	if len(rows) < 2 {
		return
	}
	b.WriteString("\n## Balancer CPU\n\nutime + stime of the balancer's processes (nginx: master and workers) from " +
		"`/proc/PID/stat` over each measured window, per operation and as a share of one core; " +
		"client_cpu_pct is the load generator's share and backends_cpu_pct the servers' behind the balancer. Median (lowest–highest) over the rounds; ratios of medians.\n\n")
	writeMarkdownTable(b, rows)
}

// goal is one target for fulcrum, checked against the medians.
type goal struct {
	text             string
	scenario, metric string
	higher           bool    // fulcrum must be >= the bound
	factor           float64 // the bound is factor × HAProxy's median; zero: use bound
	bound            float64 // absolute bound when factor is zero
}

var goals = []goal{
	{"bulk upload ≥ 1.2× HAProxy's", Throughput, "upload_mb_s", true, 1.2, 0},
	{"bulk download ≥ 1.2× HAProxy's", Throughput, "download_mb_s", true, 1.2, 0},
	{"connections/s ≥ HAProxy's", Connrate, "conns_per_s", true, 1, 0},
	{"connection p99 ≤ HAProxy's", Connrate, "p99_us", false, 1, 0},
	{"CPU per connection ≤ HAProxy's", Connrate, "cpu_us_per_conn", false, 1, 0},
	{"ping-pong (latency) req/s ≥ HAProxy's", Latency, "requests_per_s", true, 1, 0},
	{"ping-pong (latency) p99 ≤ HAProxy's", Latency, "p99_us", false, 1, 0},
	{"ping-pong over one connection (latency1) req/s ≥ HAProxy's", Latency1, "requests_per_s", true, 1, 0},
	{"idle memory per connection ≤ HAProxy's", Idle, "rss_per_conn_kib", false, 1, 0},
	{"2 descriptors per idle connection", Idle, "fds_per_conn", false, 0, 2},
	{"wrk req/s ≥ HAProxy's", Wrk, "requests_per_s", true, 1, 0},
	{"redis-benchmark req/s ≥ HAProxy's", Redis, "requests_per_s", true, 1, 0},
	{"pgbench tps ≥ HAProxy's", Pgbench, "tps", true, 1, 0},
}

// goalBound is the bound a goal sets in this report.
func (r *Report) goalBound(g goal) (float64, bool) {
	if g.factor == 0 {
		return g.bound, true
	}
	h, ok := r.Median(g.scenario, HAProxy, g.metric)
	return g.factor * h, ok
}

func (r *Report) writeGoals(b *strings.Builder) {
	b.WriteString("\n## Targets\n\n")
	for _, g := range goals {
		if !slices.Contains(r.scenarios(), g.scenario) {
			continue // not part of this report
		}
		f, ok := r.Median(g.scenario, Fulcrum, g.metric)
		bound, bok := r.goalBound(g)
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
		fmt.Fprintf(b, "- %s: **%s** (fulcrum %s, bound %s)\n", g.text, mark, formatValue(f), formatValue(bound))
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
