package bench

import (
	"strings"
	"testing"
	"time"
)

func TestParseMachineCPU(t *testing.T) {
	const stat = "cpu  100 5 40 9000 7 3 2 1 50 0\ncpu0 50 2 20 4500 3 1 1 0 25 0\nintr 12345\n"
	got, err := parseMachineCPU(strings.NewReader(stat))
	// user + nice + system + irq + softirq + steal; not idle, iowait or guest (inside user).
	if want := int64(100 + 5 + 40 + 3 + 2 + 1); err != nil || got != want {
		t.Fatalf("parseMachineCPU = %d, %v; want %d", got, err, want)
	}
	for _, bad := range []string{"", "intr 1\n", "cpu 1 2 3\n", "cpu 1 2 x 4 5 6 7 8\n", "cpu 1 2 -3 4 5 6 7 8\n"} {
		if got, err := parseMachineCPU(strings.NewReader(bad)); err == nil {
			t.Errorf("parseMachineCPU(%q) = %d, want an error", bad, got)
		}
	}
	if _, err := machineCPU(); err != nil {
		t.Errorf("this machine's /proc/stat: %v", err)
	}
}

func TestParseMeminfoSlab(t *testing.T) {
	const info = "MemTotal:       8000000 kB\nSlab:             300000 kB\nSReclaimable:     100000 kB\nSUnreclaim:       200000 kB\n"
	got, err := parseMeminfoSlab(strings.NewReader(info))
	want := slabInfo{slab: 300000 << 10, reclaimable: 100000 << 10, unreclaimable: 200000 << 10}
	if err != nil || got != want {
		t.Fatalf("parseMeminfoSlab = %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{"", "MemTotal: 1 kB\n", "Slab: 1 kB\nSReclaimable: 1 kB\n",
		"Slab: x kB\nSReclaimable: 1 kB\nSUnreclaim: 1 kB\n", "Slab: 1 MB\nSReclaimable: 1 kB\nSUnreclaim: 1 kB\n"} {
		if got, err := parseMeminfoSlab(strings.NewReader(bad)); err == nil {
			t.Errorf("parseMeminfoSlab(%q) = %+v, want an error", bad, got)
		}
	}
	if _, err := machineSlab(); err != nil {
		t.Errorf("this machine's /proc/meminfo: %v", err)
	}
	m := map[string]float64{}
	addSlabPerConn(m, slabInfo{slab: 1 << 20, unreclaimable: 1 << 19}, slabInfo{slab: 5 << 20, unreclaimable: 3 << 20}, 1024)
	if m["kernel_slab_per_conn_kib"] != 4 || m["kernel_sunreclaim_per_conn_kib"] != 2.5 {
		t.Errorf("slab per connection %v, want 4 and 2.5 KiB", m)
	}
}

// FuzzParseMachineCPU: no /proc/stat text makes the parser panic, and a busy figure is never
// negative.
func FuzzParseMachineCPU(f *testing.F) {
	f.Add("cpu  100 5 40 9000 7 3 2 1 50 0\n")
	f.Add("cpu 1 2 3\n")
	f.Add("intr 1\ncpu 9223372036854775807 1 1 1 1 1 1 1")
	f.Fuzz(func(t *testing.T, text string) {
		if n, err := parseMachineCPU(strings.NewReader(text)); err == nil && n < 0 {
			t.Errorf("%q: busy %d", text, n)
		}
		parseMeminfoSlab(strings.NewReader(text))
	})
}

// TestMachineCPUPerOp: the machine's figures are written for direct too, and per operation.
func TestMachineCPUPerOp(t *testing.T) {
	u := cpuUse{Wall: 2 * time.Second, Self: time.Second, Machine: 3 * time.Second, MachineOK: true}
	m := map[string]float64{}
	u.addTo(m, "cpu_us_per_mb_up", 1000, "_up")
	if m["machine_cpu_us_per_mb_up"] != 3000 || m["machine_cpu_pct_up"] != 150 {
		t.Errorf("machine figures %v, want 3000 µs/MB and 150%%", m)
	}
	if _, ok := m["cpu_us_per_mb_up"]; ok {
		t.Errorf("a balancer figure without a balancer: %v", m)
	}
}

// TestReportMachineAndKernelMemory: the machine CPU table includes direct, and the kernel
// memory table subtracts direct's slab and adds the balancer's RSS.
func TestReportMachineAndKernelMemory(t *testing.T) {
	r := &Report{Rounds: 3, Targets: []string{Direct, Fulcrum, HAProxy}}
	for round := 1; round <= 3; round++ {
		for name, v := range map[string]float64{Direct: 10, Fulcrum: 30, HAProxy: 40} {
			r.Results = append(r.Results,
				Result{Scenario: Latency, Target: name, Round: round, Metrics: map[string]float64{"machine_cpu_us_per_req": v}},
				Result{Scenario: Idle, Target: name, Round: round, Metrics: map[string]float64{"kernel_slab_per_conn_kib": v / 10}})
		}
		r.Results = append(r.Results, Result{Scenario: Idle, Target: Fulcrum, Round: round, Metrics: map[string]float64{"rss_per_conn_kib": 1}})
	}
	var b strings.Builder
	if err := r.WriteMarkdown(&b, ""); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{"## Machine CPU",
		"| latency | machine_cpu_us_per_req (µs CPU/req) ↓ | 10 | 30 | 40 | 0.75 | 3.00 |",
		"## Kernel memory per held connection",
		"| direct | 1 | – | – | – |", "| fulcrum | 3 | 2 | 1 | 3 |", "| haproxy | 4 | 3 | – | – |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "| latency | machine_cpu_us_per_req (µs CPU/req) ↓ | – |") {
		t.Errorf("machine CPU of direct missing:\n%s", md)
	}
}
