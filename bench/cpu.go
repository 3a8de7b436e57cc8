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

// statCPU is what /proc/PID/stat says of a process's CPU, in USER_HZ ticks.
type statCPU struct {
	own    int64 // utime + stime: the process's own threads
	reaped int64 // cutime + cstime: its children that ended and that it waited for
}

// parseStatCPU reads the CPU fields from the text of /proc/PID/stat. The process name
// (field 2) is in parentheses and may itself hold spaces and parentheses, so the fields are
// counted from the last ')'.
func parseStatCPU(stat string) (statCPU, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return statCPU{}, errors.New("bench: /proc stat: no ')' after the process name")
	}
	// After the name: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
	// cmajflt utime stime cutime cstime, that is fields 3 to 17 of proc(5).
	f := strings.Fields(stat[i+1:])
	if len(f) < 15 {
		return statCPU{}, fmt.Errorf("bench: /proc stat: %d fields after the name, want at least 15", len(f))
	}
	var ticks [4]int64
	for j, name := range []string{"utime", "stime", "cutime", "cstime"} {
		n, err := strconv.ParseInt(f[11+j], 10, 64)
		if err != nil {
			return statCPU{}, fmt.Errorf("bench: /proc stat %s: %w", name, err)
		}
		ticks[j] = n
	}
	return statCPU{own: ticks[0] + ticks[1], reaped: ticks[2] + ticks[3]}, nil
}

func readStat(pid int) (statCPU, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return statCPU{}, fmt.Errorf("bench: cpu: %w", err)
	}
	st, err := parseStatCPU(string(b))
	if err != nil {
		return statCPU{}, fmt.Errorf("bench: cpu of %d: %w", pid, err)
	}
	return st, nil
}

func ticks(n int64) time.Duration { return time.Duration(n) * tickDuration }

// processCPU is the CPU time process pid's own threads have used so far.
func processCPU(pid int) (time.Duration, error) {
	st, err := readStat(pid)
	return ticks(st.own), err
}

// treeCPU is the CPU time used so far by pid and its descendants: the live ones (nginx's
// master and workers, HAProxy's or fulcrum's one process) and those that ended and were
// waited for (PostgreSQL's per-session processes), whose time the kernel adds to their
// parent's cutime and cstime.
func treeCPU(pid int) (time.Duration, error) {
	return sumTree(pid, func(pid int) (time.Duration, error) {
		st, err := readStat(pid)
		return ticks(st.own + st.reaped), err
	})
}

// cpuWindow measures the CPU a balancer, the backends and this process spend over one
// measured window. Its zero value measures nothing.
type cpuWindow struct {
	wall      time.Time
	balancer  cpuReading
	backends  cpuReading
	self      time.Duration
	machine   time.Duration // every CPU's busy time; valid when machineOK
	machineOK bool
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
	m, err := machineCPU()
	w.machine, w.machineOK = m, err == nil
	return w
}

// cpuUse is what one window measured.
type cpuUse struct {
	Wall     time.Duration
	Balancer time.Duration // zero with BalancerOK false: not measured
	Backends time.Duration // zero with BackendsOK false: not measured
	Self     time.Duration // this process: the load generator
	// Machine is the busy time of every CPU of the machine (/proc/stat): the balancer, the
	// load generator, the backends, the kernel's work for them, and whatever else ran.
	Machine time.Duration // zero with MachineOK false: not measured
	// BalancerOK, BackendsOK and MachineOK say the figure was read at both ends of the window.
	BalancerOK, BackendsOK, MachineOK bool
}

// stop closes the window.
func (w cpuWindow) stop() cpuUse {
	u := cpuUse{Wall: time.Since(w.wall)}
	u.Balancer, u.BalancerOK = w.balancer.since()
	u.Backends, u.BackendsOK = w.backends.since()
	if d, err := processCPU(os.Getpid()); err == nil {
		u.Self = d - w.self
	}
	if d, err := machineCPU(); err == nil && w.machineOK {
		u.Machine, u.MachineOK = d-w.machine, true
	}
	return u
}

// addTo writes the window's figures into metrics: the balancer's CPU per operation under
// perOp (µs per op), its share of one core (cpu_pct+suffix), and the shares of the load
// generator (client_cpu_pct+suffix) and of the backends (backends_cpu_pct+suffix), and the
// whole machine's CPU per operation (machine_+perOp) and share of one core
// (machine_cpu_pct+suffix), for direct too. A figure not read is not written; zero ops write
// no per-op figure.
func (u cpuUse) addTo(metrics map[string]float64, perOp string, ops float64, suffix string) {
	if u.Wall <= 0 {
		return
	}
	metrics["client_cpu_pct"+suffix] = pct(u.Self, u.Wall)
	if u.MachineOK {
		metrics["machine_cpu_pct"+suffix] = pct(u.Machine, u.Wall)
		if ops > 0 {
			metrics["machine_"+perOp] = cpuPerOp(u.Machine, ops)
		}
	}
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
