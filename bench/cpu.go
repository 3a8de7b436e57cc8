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

// cpuWindow measures the CPU a balancer and this process spend over one measured window.
// Its zero value measures nothing.
type cpuWindow struct {
	pid        int // balancer process; 0: none known
	wall       time.Time
	balancer   time.Duration
	self       time.Duration
	balancerOK bool
}

// startCPU opens a window over balancer pid (0: no balancer) and this process.
func startCPU(pid int) cpuWindow {
	w := cpuWindow{pid: pid, wall: time.Now()}
	if pid != 0 {
		d, err := treeCPU(pid)
		w.balancer, w.balancerOK = d, err == nil
	}
	w.self, _ = processCPU(os.Getpid())
	return w
}

// cpuUse is what one window measured.
type cpuUse struct {
	Wall     time.Duration
	Balancer time.Duration // zero with BalancerOK false: not measured
	Self     time.Duration // this process: the load generator
	// BalancerOK says Balancer was read at both ends of the window.
	BalancerOK bool
}

// stop closes the window.
func (w cpuWindow) stop() cpuUse {
	u := cpuUse{Wall: time.Since(w.wall)}
	if w.balancerOK {
		d, err := treeCPU(w.pid)
		u.Balancer, u.BalancerOK = d-w.balancer, err == nil
	}
	if d, err := processCPU(os.Getpid()); err == nil {
		u.Self = d - w.self
	}
	return u
}

// addTo writes the window's figures into metrics: the balancer's CPU per operation under
// perOp (µs per op), its share of one core (cpu_pct+suffix), and the load generator's share
// (client_cpu_pct+suffix). Without a balancer reading only the client's share is written;
// zero ops write no per-op figure.
func (u cpuUse) addTo(metrics map[string]float64, perOp string, ops float64, suffix string) {
	if u.Wall > 0 {
		metrics["client_cpu_pct"+suffix] = pct(u.Self, u.Wall)
	}
	if !u.BalancerOK {
		return
	}
	if u.Wall > 0 {
		metrics["cpu_pct"+suffix] = pct(u.Balancer, u.Wall)
	}
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
