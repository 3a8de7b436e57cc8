package bench

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// Fields after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt
	// cmajflt utime stime cutime cstime ...
	tail := " S 1 2 3 0 -1 4194560 100 0 0 0 250 75 9 9 20 0 4 0 12345 1000 200"
	want := statCPU{own: 325, reaped: 18}
	for _, tc := range []struct{ name, stat string }{
		{"plain", "4242 (fulcrum)" + tail},
		{"spaces and parentheses in the name", "77 (a (b) c) d)" + tail},
		{"name that looks like fields", "9 (x) S 1 2 3 0 -1 4 5 6 7 8 9999 9999 1 1)" + tail},
		{"trailing newline", "1 (init)" + tail + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU(tc.stat)
			if err != nil || got != want {
				t.Fatalf("parseStatCPU = %+v, %v; want %+v", got, err, want)
			}
		})
	}
	for _, bad := range []string{"", "12 fulcrum S 1 2", "12 (fulcrum) S 1 2 3", "12 (f) S 1 2 3 0 -1 4 5 6 7 8 250 75 9",
		"12 (f) S 1 2 3 0 -1 4 5 6 7 8 x 75 9 9", "12 (f) S 1 2 3 0 -1 4 5 6 7 8 250 75 9 -"} {
		if got, err := parseStatCPU(bad); err == nil {
			t.Errorf("parseStatCPU(%q) = %+v, want an error", bad, got)
		}
	}
}

// FuzzParseStatCPU: whatever the process name holds, the CPU figure comes from the fields
// after it; and no line makes the parser panic.
func FuzzParseStatCPU(f *testing.F) {
	f.Add("fulcrum", "4242 (fulcrum) S 1 2")
	f.Add("a (b) c) d", "(")
	f.Add(") S 1 2 3 0 -1 4 5 6 7 8 9 9", "1 (x) S 1 2 3 0 -1 4 5 6 7 8 x 75")
	f.Fuzz(func(t *testing.T, name, line string) {
		const tail = " S 1 2 3 0 -1 4194560 100 0 0 0 250 75 9 9 20 0"
		if got, err := parseStatCPU("1 (" + name + ")" + tail); err != nil || got != (statCPU{own: 325, reaped: 18}) {
			t.Errorf("name %q: %+v, %v; want 325 and 18", name, got, err)
		}
		parseStatCPU(line)
	})
}

// TestCPUPerOp checks the arithmetic from a window's readings to the reported figures.
func TestCPUPerOp(t *testing.T) {
	u := cpuUse{Wall: 2 * time.Second, Balancer: 500 * time.Millisecond, Self: time.Second, BalancerOK: true}
	m := map[string]float64{}
	u.addTo(m, "cpu_us_per_conn", 1000, "")
	want := map[string]float64{"cpu_us_per_conn": 500, "cpu_pct": 25, "client_cpu_pct": 50}
	if len(m) != len(want) {
		t.Fatalf("metrics %v, want %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	m = map[string]float64{}
	u.addTo(m, "cpu_us_per_mb_up", 0, "_up")
	if _, ok := m["cpu_us_per_mb_up"]; ok || m["cpu_pct_up"] != 25 || m["client_cpu_pct_up"] != 50 {
		t.Errorf("no operations: %v, want shares only", m)
	}
	m = map[string]float64{}
	cpuUse{Wall: time.Second, Self: time.Second, Backends: 1500 * time.Millisecond, BackendsOK: true}.addTo(m, "cpu_us_per_req", 10, "")
	if len(m) != 2 || m["client_cpu_pct"] != 100 || m["backends_cpu_pct"] != 150 {
		t.Errorf("no balancer: %v, want the client's and the backends' shares only", m)
	}
	m = map[string]float64{}
	cpuUse{}.addTo(m, "cpu_us_per_req", 10, "")
	if len(m) != 0 {
		t.Errorf("empty window: %v, want nothing", m)
	}
	if got := cpuPerOp(3*tickDuration, 30e3); got != 1 {
		t.Errorf("3 ticks over 30,000 ops = %v µs, want 1", got)
	}
}

// burnUntil spins this goroutine until cond holds or a deadline passes.
func burnUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	x := 0
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		for i := range 1_000_000 {
			x += i
		}
	}
	_ = x
}

// TestProcessCPU reads this process's CPU from /proc and sees it grow with work.
func TestProcessCPU(t *testing.T) {
	w := startCPU(os.Getpid())
	burnUntil(t, "this process's CPU to grow by 3 ticks", func() bool {
		return w.stop().Balancer >= 3*tickDuration
	})
	if u := w.stop(); !u.BalancerOK || u.Self < u.Balancer-tickDuration || u.Wall <= 0 || u.BackendsOK {
		t.Errorf("window %+v: want the balancer reading (this process) to match the client's, and no backends", u)
	}
	w = startCPU(0, os.Getpid(), os.Getpid())
	burnUntil(t, "two readings of this process to grow by 4 ticks", func() bool {
		return w.stop().Backends >= 4*tickDuration
	})
	if u := w.stop(); u.BalancerOK || !u.BackendsOK {
		t.Errorf("window %+v: want the backends read and no balancer", u)
	}
}

// TestTreeCPUCountsChildren: a shell that waits on a busy child uses no CPU of its own, but
// its tree does, while the child runs and after it ended.
func TestTreeCPUCountsChildren(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sh -c 'while :; do :; done' & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range children(cmd.Process.Pid) {
			if p, err := os.FindProcess(c); err == nil {
				p.Kill()
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
	})
	eventually(t, "the busy child to use 5 ticks", func() bool {
		tree, err := treeCPU(cmd.Process.Pid)
		own, err2 := processCPU(cmd.Process.Pid)
		return err == nil && err2 == nil && tree >= own+5*tickDuration
	})
	busy := children(cmd.Process.Pid)
	if len(busy) != 1 {
		t.Fatalf("children %v, want the one busy loop", busy)
	}
	before, _ := treeCPU(cmd.Process.Pid)
	if err := syscall.Kill(busy[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the shell to reap the busy child", func() bool { return len(children(cmd.Process.Pid)) == 0 })
	if after, err := treeCPU(cmd.Process.Pid); err != nil || after < before {
		t.Errorf("tree CPU %v after the child ended, %v before (%v): its time must stay counted", after, before, err)
	}
}
