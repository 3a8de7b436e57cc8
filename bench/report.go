package bench

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Report is the outcome of a comparison.
type Report struct {
	Machine           Machine
	Command           string
	Config            Config // the load of a comparison; zero for real clients
	Load              string // what the load was, when Config does not say
	Title             string // the report's heading; empty: "fulcrum side by side: " and the targets
	Rounds            int
	Targets           []string // peers that ran, in run order
	Results           []Result
	Skipped           []string // peers not run, and why
	Setups            []string // "peer: how it ran", for peers whose name does not say
	Errors            []string // runs that failed
	Notes             []string
	Started, Finished time.Time
}

// record keeps one run's result, or the message of its failure, and prints it to out as it
// comes (res as JSON when asJSON).
func (r *Report) record(out io.Writer, asJSON bool, res Result, failure string) {
	switch {
	case failure != "":
		fmt.Fprintln(out, "error: "+failure)
		r.Errors = append(r.Errors, failure)
	case asJSON:
		r.Results = append(r.Results, res)
		fmt.Fprintln(out, res.JSON())
	default:
		r.Results = append(r.Results, res)
		fmt.Fprintln(out, res.Text())
	}
}

// Machine describes where a comparison ran.
type Machine struct {
	CPUs    int
	CPU     string
	Kernel  string
	Go      string
	HAProxy string
	Nginx   string
	LoadAvg string // /proc/loadavg at the start: a busy machine makes every figure provisional
	// LoadAvgEnd is /proc/loadavg when the comparison finished; empty when not read.
	LoadAvgEnd string
}

// DescribeMachine reads the CPU, kernel and peer versions of this machine.
func DescribeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), CPU: "unknown", Kernel: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.LoadAvg = loadAvg()
	m.HAProxy = peerVersion("haproxy", "-v")
	m.Nginx = peerVersion("nginx", "-v")
	return m
}

// loadAvg is the 1, 5 and 15 minute load averages; empty when /proc does not say.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func peerVersion(name, flag string) string {
	exe, err := lookPeer(name)
	if err != nil {
		return "not installed"
	}
	out, _ := exec.Command(exe, flag).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// Median is the median of one metric over the rounds of one scenario and target; ok is false
// when no run reported it.
func (r *Report) Median(scenario, target, metric string) (float64, bool) {
	var vs []float64
	for _, res := range r.Results {
		if res.Scenario != scenario || res.Target != target {
			continue
		}
		if v, ok := res.Metrics[metric]; ok {
			vs = append(vs, v)
		}
	}
	return median(vs), len(vs) > 0
}

// Ratio is a/b of two medians of metric in scenario, one per target, when both exist and b
// is not zero.
func (r *Report) Ratio(scenario, metric, a, b string) (float64, bool) {
	va, oka := r.Median(scenario, a, metric)
	vb, okb := r.Median(scenario, b, metric)
	if !oka || !okb || vb == 0 {
		return 0, false
	}
	return va / vb, true
}

// Has reports whether target ran in this comparison.
func (r *Report) Has(target string) bool { return slices.Contains(r.Targets, target) }

// scenarios are the scenarios with at least one result, in the standard order.
func (r *Report) scenarios() []string {
	var out []string
	for _, sc := range append(append(slices.Clone(Scenarios), RealSuites...), ManyBackends) {
		if slices.ContainsFunc(r.Results, func(res Result) bool { return res.Scenario == sc }) {
			out = append(out, sc)
		}
	}
	return out
}

// ratioColumns are the "a ÷ b" columns of the summary, each shown when both peers ran:
// every balancer against HAProxy, fulcrum against its variants and the yardstick, the
// sockmap plane against the epoll plane and the in-kernel prototype, fulcrum's planes and the
// prototype against direct, and nginx against HAProxy.
func (r *Report) ratioColumns() [][2]string {
	var out [][2]string
	for _, c := range [][2]string{
		{Fulcrum, HAProxy}, {FulcrumGoroutine, HAProxy}, {FulcrumSockmap, HAProxy}, {FulcrumNometrics, HAProxy},
		{Yardstick, HAProxy}, {YardstickRawWait, HAProxy}, {SockmapYardstick, HAProxy},
		{Fulcrum, FulcrumGoroutine}, {Fulcrum, FulcrumNometrics}, {Fulcrum, Yardstick}, {Fulcrum, YardstickRawWait},
		{FulcrumSockmap, Fulcrum}, {FulcrumSockmap, SockmapYardstick},
		{Fulcrum, Direct}, {FulcrumSockmap, Direct}, {SockmapYardstick, Direct}, {Nginx, HAProxy},
	} {
		if r.Has(c[0]) && r.Has(c[1]) {
			out = append(out, c)
		}
	}
	return out
}

// table is the summary: one row per key metric, medians per target, then ratios.
func (r *Report) table() [][]string {
	return r.metricTable(r.Targets, r.ratioColumns(), func(m Metric) bool { return m.Key }, r.cell)
}

// cpuTable is the balancers' CPU: per operation and as a share of a core, with the spread
// over the rounds, and the load generator's share beside it.
func (r *Report) cpuTable() [][]string {
	var targets []string
	for _, t := range r.Targets {
		if t != Direct {
			targets = append(targets, t)
		}
	}
	var cols [][2]string
	for _, c := range r.ratioColumns() {
		if c[1] != Direct { // direct has no balancer CPU
			cols = append(cols, c)
		}
	}
	return r.metricTable(targets, cols, func(m Metric) bool { return isCPUMetric(m.Name) }, r.spreadCell)
}

// machineTable is the whole machine's CPU per operation and share of a core, for every
// peer including direct (the cost of the load and the backends alone), with the spread.
func (r *Report) machineTable() [][]string {
	return r.metricTable(r.Targets, r.ratioColumns(), func(m Metric) bool { return strings.HasPrefix(m.Name, "machine_cpu_") }, r.spreadCell)
}

func isCPUMetric(name string) bool {
	return strings.HasPrefix(name, "cpu_") || strings.HasPrefix(name, "client_cpu_") || strings.HasPrefix(name, "backends_cpu_")
}

// metricTable has a head row, then one row per chosen metric that some run reported:
// a cell per target, then the ratio columns cols.
func (r *Report) metricTable(targets []string, cols [][2]string, choose func(Metric) bool, cell func(sc, t, metric string) string) [][]string {
	head := []string{"scenario", "metric"}
	head = append(head, targets...)
	for _, c := range cols {
		head = append(head, c[0]+" ÷ "+c[1])
	}
	rows := [][]string{head}
	for _, sc := range r.scenarios() {
		for _, m := range Metrics[sc] {
			if !choose(m) || !r.reported(sc, m.Name) {
				continue
			}
			row := []string{sc, metricLabel(m)}
			for _, t := range targets {
				row = append(row, cell(sc, t, m.Name))
			}
			for _, c := range cols {
				if v, ok := r.Ratio(sc, m.Name, c[0], c[1]); ok {
					row = append(row, fmt.Sprintf("%.2f", v))
				} else {
					row = append(row, "–")
				}
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// reported says whether any run of scenario sc has the metric.
func (r *Report) reported(sc, metric string) bool {
	return slices.ContainsFunc(r.Results, func(res Result) bool {
		_, ok := res.Metrics[metric]
		return res.Scenario == sc && ok
	})
}

func metricLabel(m Metric) string {
	s := m.Name
	if m.Unit != "" {
		s += " (" + m.Unit + ")"
	}
	if m.Higher {
		return s + " ↑"
	}
	return s + " ↓"
}

func (r *Report) cell(sc, target, metric string) string {
	v, ok := r.Median(sc, target, metric)
	if !ok {
		return "–"
	}
	return formatValue(v)
}

// spreadCell is the median with the lowest and highest run: "120 (110–135)".
func (r *Report) spreadCell(sc, target, metric string) string {
	v, ok := r.Median(sc, target, metric)
	if !ok {
		return "–"
	}
	lo, hi := r.span(sc, target, metric)
	if lo == hi {
		return formatValue(v)
	}
	return fmt.Sprintf("%s (%s–%s)", formatValue(v), formatValue(lo), formatValue(hi))
}

// span is the lowest and highest value of a metric over the rounds.
func (r *Report) span(sc, target, metric string) (lo, hi float64) {
	first := true
	for _, res := range r.Results {
		v, ok := res.Metrics[metric]
		if res.Scenario != sc || res.Target != target || !ok {
			continue
		}
		if first {
			lo, hi, first = v, v, false
		}
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
}

// WriteText prints the summary table and the CPU table with aligned columns.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "\nmedians of %d rounds (↑ higher is better, ↓ lower is better):\n", r.Rounds)
	writeTextTable(w, r.table())
	if cpu := r.cpuTable(); len(cpu) > 1 {
		fmt.Fprintf(w, "\nbalancer CPU, median (lowest–highest) of %d rounds:\n", r.Rounds)
		writeTextTable(w, cpu)
	}
	if m := r.machineTable(); len(m) > 1 {
		fmt.Fprintf(w, "\nmachine CPU (/proc/stat, every process), median (lowest–highest) of %d rounds:\n", r.Rounds)
		writeTextTable(w, m)
	}
	for _, s := range r.Skipped {
		fmt.Fprintln(w, s)
	}
	for _, e := range r.Errors {
		fmt.Fprintln(w, "error:", e)
	}
}

func writeTextTable(w io.Writer, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	for _, row := range rows {
		for i, c := range row {
			fmt.Fprintf(w, "%-*s  ", widths[i], c)
		}
		fmt.Fprintln(w)
	}
}
