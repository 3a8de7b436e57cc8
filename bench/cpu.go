package bench

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of utime and stime in /proc/PID/stat: clock ticks of 1/100 s on every
// Linux architecture (the kernel scales its internal tick to USER_HZ for user space).
const userHZ = 100

// tickDuration is one USER_HZ tick.
const tickDuration = time.Second / userHZ

// parseStatCPU returns utime + stime, in ticks, from the text of /proc/PID/stat. The process
// name (field 2) is in parentheses and may itself hold spaces and parentheses, so the fields
// are counted from the last ')'.
func parseStatCPU(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("bench: /proc stat: no ')' after the process name")
	}
	// After the name: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
	// cmajflt utime stime, that is fields 3 to 15 of proc(5); utime and stime are the 12th
	// and 13th after the name.
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: /proc stat: %d fields after the name, want at least 13", len(f))
	}
	utime, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bench: /proc stat utime: %w", err)
	}
	stime, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bench: /proc stat stime: %w", err)
	}
	return utime + stime, nil
}

// processCPU is the CPU time process pid has used so far, all its threads together.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: cpu: %w", err)
	}
	ticks, err := parseStatCPU(string(b))
	if err != nil {
		return 0, fmt.Errorf("bench: cpu of %d: %w", pid, err)
	}
	return time.Duration(ticks) * tickDuration, nil
}

// treeCPU is the CPU time used so far by pid and its live descendants: nginx's master and
// workers, HAProxy's or fulcrum's one process. A descendant that exits between two readings
// takes its time with it; the balancers here keep their processes for their whole life.
func treeCPU(pid int) (time.Duration, error) {
	total, err := processCPU(pid)
	if err != nil {
		return 0, err
	}
	for _, c := range children(pid) {
		if d, err := treeCPU(c); err == nil {
			total += d
		}
	}
	return total, nil
}

// cpuWindow measures the CPU a balancer, the backends and this process spend over one
// measured window. Its zero value measures nothing.
type cpuWindow struct {
	wall     time.Time
	balancer cpuReading
	backends cpuReading
	self     time.Duration
}

// cpuReading is the CPU of a set of process trees at the start of a window.
type cpuReading struct {
	pids []int
	cpu  time.Duration
	ok   bool // every tree was read
}

func readCPU(pids []int) cpuReading {
	r := cpuReading{pids: pids, ok: len(pids) > 0}
	for _, pid := range pids {
		d, err := treeCPU(pid)
		r.cpu += d
		r.ok = r.ok && err == nil
	}
	return r
}

// since is the CPU the trees used since r was read; ok is false when a reading failed.
func (r cpuReading) since() (time.Duration, bool) {
	now := readCPU(r.pids)
	return now.cpu - r.cpu, r.ok && now.ok
}

// startCPU opens a window over the balancer process pid (0: none known), the processes the
// backends run in (none: they run in this process) and this process.
func startCPU(balancer int, backends ...int) cpuWindow {
	w := cpuWindow{wall: time.Now(), backends: readCPU(backends)}
	if balancer != 0 {
		w.balancer = readCPU([]int{balancer})
	}
	w.self, _ = processCPU(os.Getpid())
	return w
}

// cpuUse is what one window measured.
type cpuUse struct {
	Wall     time.Duration
	Balancer time.Duration // zero with BalancerOK false: not measured
	Backends time.Duration // zero with BackendsOK false: not measured
	Self     time.Duration // this process: the load generator
	// BalancerOK and BackendsOK say the figure was read at both ends of the window.
	BalancerOK, BackendsOK bool
}

// stop closes the window.
func (w cpuWindow) stop() cpuUse {
	u := cpuUse{Wall: time.Since(w.wall)}
	u.Balancer, u.BalancerOK = w.balancer.since()
	u.Backends, u.BackendsOK = w.backends.since()
	if d, err := processCPU(os.Getpid()); err == nil {
		u.Self = d - w.self
	}
	return u
}

// addTo writes the window's figures into metrics: the balancer's CPU per operation under
// perOp (µs per op), its share of one core (cpu_pct+suffix), and the shares of the load
// generator (client_cpu_pct+suffix) and of the backends (backends_cpu_pct+suffix). A figure
// not read is not written; zero ops write no per-op figure.
func (u cpuUse) addTo(metrics map[string]float64, perOp string, ops float64, suffix string) {
	if u.Wall <= 0 {
		return
	}
	metrics["client_cpu_pct"+suffix] = pct(u.Self, u.Wall)
	if u.BackendsOK {
		metrics["backends_cpu_pct"+suffix] = pct(u.Backends, u.Wall)
	}
	if !u.BalancerOK {
		return
	}
	metrics["cpu_pct"+suffix] = pct(u.Balancer, u.Wall)
	if ops > 0 {
		metrics[perOp] = cpuPerOp(u.Balancer, ops)
	}
}

// cpuPerOp is cpu in microseconds divided by ops.
func cpuPerOp(cpu time.Duration, ops float64) float64 {
	return float64(cpu) / float64(time.Microsecond) / ops
}

// pct is cpu as a percentage of one core over wall.
func pct(cpu, wall time.Duration) float64 {
	return 100 * float64(cpu) / float64(wall)
}
