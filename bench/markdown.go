package bench

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// WriteMarkdown writes the report as Markdown; chart is the chart's file name relative to the
// Markdown file ("" for none).
func (r *Report) WriteMarkdown(w io.Writer, chart string) error {
	var b strings.Builder
	b.WriteString("# fulcrum side by side: direct, fulcrum, HAProxy, nginx\n\n")
	fmt.Fprintf(&b, "Run %s, %.0f s. ", r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Finished.Sub(r.Started).Seconds())
	if r.Command != "" {
		fmt.Fprintf(&b, "Re-run with `%s`.", r.Command)
	}
	b.WriteString("\n\n## Machine\n\n")
	m := r.Machine
	fmt.Fprintf(&b, "- CPUs: %d × %s\n- Kernel: %s\n- Go: %s\n- HAProxy: %s\n- nginx: %s\n- Load average at start: %s (1, 5, 15 min; near 0 on a quiet machine)\n",
		m.CPUs, m.CPU, m.Kernel, m.Go, m.HAProxy, m.Nginx, m.LoadAvg)
	fmt.Fprintf(&b, "- Load: %d connections/workers, %s per timed run, %d held connections, %d interleaved rounds (%s)\n",
		r.Config.conns(), r.Config.duration(), r.Config.hold(), r.Rounds, strings.Join(r.Targets, " → "))
	b.WriteString("\n## Medians\n\n↑ higher is better, ↓ lower is better. A ratio is the first peer's median over the second's.\n\n")
	writeMarkdownTable(&b, r.table())
	if chart != "" {
		fmt.Fprintf(&b, "\n![relative to HAProxy](%s)\n", filepath.ToSlash(chart))
	}
	r.writeGoals(&b)
	r.writeNotes(&b)
	r.writeRuns(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

func writeMarkdownTable(b *strings.Builder, rows [][]string) {
	for i, row := range rows {
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
		if i == 0 {
			b.WriteString(strings.Repeat("| --- ", len(row)) + "|\n")
		}
	}
}

// goal is one target of issue 3, checked against the medians.
type goal struct {
	text             string
	scenario, metric string
	higher           bool    // fulcrum must be >= the bound
	bound            float64 // absolute bound; zero: HAProxy's median is the bound
}

var goals = []goal{
	{"upload throughput ≥ HAProxy's", Throughput, "upload_mb_s", true, 0},
	{"download throughput ≥ HAProxy's", Throughput, "download_mb_s", true, 0},
	{"connection rate ≥ HAProxy's", Connrate, "conns_per_s", true, 0},
	{"ping-pong p99 ≤ HAProxy's", Latency, "p99_us", false, 0},
	{"connect-transaction p99 ≤ HAProxy's", Connrate, "p99_us", false, 0},
	{"idle connection ≤ 16 KiB of RSS", Idle, "rss_per_conn_kib", false, 16},
}

func (r *Report) writeGoals(b *strings.Builder) {
	b.WriteString("\n## Goals (issue 3)\n\n")
	for _, g := range goals {
		f, ok := r.Median(g.scenario, Fulcrum, g.metric)
		bound, bok := g.bound, g.bound != 0
		if !bok {
			bound, bok = r.Median(g.scenario, HAProxy, g.metric)
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
