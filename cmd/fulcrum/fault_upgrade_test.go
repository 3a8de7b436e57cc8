package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// readPID reads a --pid-file; 0 when it is missing or partial.
func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(string(bytes.TrimSpace(b)))
	return n
}

// stopNewest ends whatever process the PID file names, for cleanup after upgrades (the
// successors are not the test's children).
func stopNewest(t *testing.T, pidFile string) {
	pid := readPID(pidFile)
	if pid == 0 || !alive(pid) {
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(30 * time.Second)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(pid) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("upgraded balancer %d ignored SIGTERM", pid)
	}
}

// TestUpgrade_TenSIGHUPsRefuseNothing: clients open connections in a loop while the balancer
// is upgraded ten times, once a second, each SIGHUP sent to the newest process (from
// --pid-file). No connection is refused, every round trip completes with its bytes checked,
// each successor serves the registry it took over (backends added at runtime, not static),
// heartbeats sent all along are all answered, the state file ends up written by the newest
// process, and each old process exits 0 after draining.
func TestUpgrade_TenSIGHUPsRefuseNothing(t *testing.T) {
	eachPlane(t, testUpgrade_TenSIGHUPsRefuseNothing)
}

func testUpgrade_TenSIGHUPsRefuseNothing(t *testing.T) {
	g1, g2 := startBackend(t, serveXfer), startBackend(t, serveXfer)
	dir := t.TempDir()
	pidFile, state := filepath.Join(dir, "fulcrum.pid"), filepath.Join(dir, "state.json")
	b := startBalancer(t, "--pid-file", pidFile, "--state-file", state, "--drain-timeout", "10s")
	t.Cleanup(func() { stopNewest(t, pidFile) })
	addBackend(t, b.admn, g1.Addr())
	addBackend(t, b.admn, g2.Addr())
	eventually(t, 10*time.Second, "the PID file names the balancer", func() bool { return readPID(pidFile) == b.pid() })

	var r clientRun
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				r.record(xferRoundTrip(b.listen, 8<<10, 8<<10))
			}
		}()
	}
	var beats, beatErrs atomic.Int64
	h1, p1 := splitHostPort(t, g1.Addr())
	wg.Add(1)
	go func() { // a heartbeat every 20 ms through the admin port, which is handed over too
		defer wg.Done()
		for !stop.Load() {
			if body, code, err := adminGet(b.admn, "/upstream/add?host="+h1+"&port="+p1); err != nil || code != 200 {
				if beatErrs.Add(1) == 1 {
					t.Logf("heartbeat failed at %v: %d %v %s", time.Now().Format("15:04:05.000000"), code, err, body)
				}
			}
			beats.Add(1)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	pids := []int{b.pid()}
	var switchTimes []time.Duration
	for i := range 10 {
		tick := time.Now()
		old := pids[len(pids)-1]
		if err := syscall.Kill(old, syscall.SIGHUP); err != nil {
			t.Fatalf("upgrade %d: SIGHUP %d: %v", i+1, old, err)
		}
		eventually(t, 20*time.Second, "a successor ready and the old process gone", func() bool {
			pid := readPID(pidFile)
			return pid != 0 && pid != old && !alive(old)
		})
		switchTimes = append(switchTimes, time.Since(tick))
		pids = append(pids, readPID(pidFile))
		st := status(t, b.admn)
		if _, ok := st[g1.Addr()]; !ok || len(st) != 2 {
			t.Fatalf("upgrade %d: the successor's registry is %v; want both backends added at runtime", i+1, st)
		}
		time.Sleep(time.Until(tick.Add(time.Second))) // pacing: one upgrade a second
	}
	stop.Store(true)
	wg.Wait()
	eventually(t, 10*time.Second, "every conn_count back to 0", func() bool { return activeConns(t, b.admn) == 0 })
	<-b.done
	t.Logf("10 upgrades (pids %v, each switch within %v): %d round trips ok, %d failed; %d heartbeats, %d failed",
		pids, maxDuration(switchTimes).Round(time.Millisecond), r.ok.Load(), r.failed.Load(), beats.Load(), beatErrs.Load())
	if beatErrs.Load() != 0 {
		t.Fatalf("%d heartbeats failed across the upgrades", beatErrs.Load())
	}
	if sb := stateBackends(t, state); len(sb) != 2 {
		t.Fatalf("the state file after the upgrades lists %v; want both backends", sb)
	}
	if r.failed.Load() != 0 {
		t.Fatalf("%d connections failed across the upgrades (first: %v)", r.failed.Load(), r.firstErr)
	}
	if r.ok.Load() < 50 {
		t.Fatalf("only %d round trips in 10 s", r.ok.Load())
	}
	if b.err != nil {
		t.Fatalf("the first process exited with %v after handing over", b.err)
	}
	if n := strings.Count(b.log(), `"msg":"upgrade complete`); n != 10 {
		t.Fatalf("%d successors logged their take-over, want 10", n)
	}
}

func maxDuration(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// stateBackends reads the backends of a state file by key.
func stateBackends(t *testing.T, path string) map[string]map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read state file: %v", err)
	}
	var doc struct{ Backends []map[string]any }
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("state file is not JSON: %v\n%s", err, data)
	}
	out := map[string]map[string]any{}
	for _, b := range doc.Backends {
		out[b["host"].(string)+":"+strconv.Itoa(int(b["port"].(float64)))] = b
	}
	return out
}

// TestStateFile_SavedBeforeReplyAndRestoredAtStart: every admin change (add, weight, remove,
// drain) is in the state file when its reply arrives; heartbeats reach it within about a
// second; a restarted balancer serves the saved backends at once, before any heartbeat, and a
// drained one stays drained.
func TestStateFile_SavedBeforeReplyAndRestoredAtStart(t *testing.T) {
	eachPlane(t, testStateFile_SavedBeforeReplyAndRestoredAtStart)
}

func testStateFile_SavedBeforeReplyAndRestoredAtStart(t *testing.T) {
	g1, g2 := startBackend(t, serveXfer), startBackend(t, serveXfer)
	state := filepath.Join(t.TempDir(), "state.json")
	b := startBalancer(t, "--state-file", state, "--ttl", "1h")

	host, port := splitHostPort(t, g1.Addr())
	if _, code, err := adminGet(b.admn, "/upstream/add?host="+host+"&port="+port+"&weight=3"); err != nil || code != 200 {
		t.Fatalf("add: %d %v", code, err)
	}
	if got := stateBackends(t, state)[g1.Addr()]; got == nil || got["weight"] != 3.0 {
		t.Fatalf("right after the add reply the state file has %v; want %s with weight 3", got, g1.Addr())
	}
	addBackend(t, b.admn, g2.Addr())
	if stateBackends(t, state)[g2.Addr()] == nil {
		t.Fatal("the second add is not in the state file when its reply arrives")
	}
	host2, port2 := splitHostPort(t, g2.Addr())
	if _, code, err := adminGet(b.admn, "/upstream/remove?host="+host2+"&port="+port2); err != nil || code != 200 {
		t.Fatalf("remove: %d %v", code, err)
	}
	if stateBackends(t, state)[g2.Addr()] != nil {
		t.Fatal("the removed backend is still in the state file when the reply arrives")
	}
	g3 := startBackend(t, serveXfer)
	addBackend(t, b.admn, g3.Addr())
	host3, port3 := splitHostPort(t, g3.Addr())
	if _, code, err := adminGet(b.admn, "/upstream/drain?host="+host3+"&port="+port3); err != nil || code != 200 {
		t.Fatalf("drain: %d %v", code, err)
	}
	if got := stateBackends(t, state)[g3.Addr()]; got == nil || got["draining"] != true {
		t.Fatalf("right after the drain reply the state file has %v; want draining", got)
	}
	hb0 := stateBackends(t, state)[g1.Addr()]["last_heartbeat"]
	addBackend(t, b.admn, g1.Addr()) // a heartbeat: saved within about a second, not before the reply
	eventually(t, 5*time.Second, "the heartbeat reaches the state file", func() bool {
		return stateBackends(t, state)[g1.Addr()]["last_heartbeat"] != hb0
	})

	b.stop(t)
	b2 := startBalancer(t, "--state-file", state, "--ttl", "1h")
	st := status(t, b2.admn)
	if s, ok := st[g1.Addr()]; !ok || len(st) != 2 || s.State != "up" || st[g3.Addr()].State != "draining" {
		t.Fatalf("after a restart the registry is %v; want %s up and %s still draining", st, g1.Addr(), g3.Addr())
	}
	if err := xferRoundTrip(b2.listen, 64<<10, 64<<10); err != nil {
		t.Fatalf("the restarted balancer does not serve at once: %v", err)
	}
	g1.Stop()
	if g1.Served() != 1 {
		t.Fatalf("the restored backend served %d connections, want 1", g1.Served())
	}
}

func splitHostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	return addr[:i], addr[i+1:]
}

// TestStateFile_UnusableIsMovedAside: a corrupt state file is logged as an error and renamed to
// PATH.corrupt-<unix time>; the balancer starts empty and serves. (A file of a newer format,
// or a path that cannot be written, stops the start instead: TestServeRefusals.)
func TestStateFile_UnusableIsMovedAside(t *testing.T) {
	eachPlane(t, testStateFile_UnusableIsMovedAside)
}

func testStateFile_UnusableIsMovedAside(t *testing.T) {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	cases := map[string]func(path string) error{
		"garbage":    func(p string) error { return os.WriteFile(p, []byte("{not json"), 0o600) },
		"no version": func(p string) error { return os.WriteFile(p, []byte(`{"backends":[]}`), 0o600) },
		"bad record": func(p string) error {
			return os.WriteFile(p, []byte(`{"version":1,"backends":[{"host":"127.0.0.1","port":0,"weight":1,"last_heartbeat":"`+now+`","created_time":"`+now+`"}]}`), 0o600)
		},
	}
	for name, spoil := range cases {
		t.Run(name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "state.json")
			if err := spoil(state); err != nil {
				t.Fatal(err)
			}
			b := startBalancer(t, "--state-file", state)
			if st := status(t, b.admn); len(st) != 0 {
				t.Fatalf("registry %v, want empty", st)
			}
			aside, _ := filepath.Glob(state + ".corrupt-*")
			if len(aside) != 1 {
				t.Fatalf("moved-aside files: %v; want one %s.corrupt-<unix time>", aside, state)
			}
			if !strings.Contains(b.log(), `"level":"ERROR","msg":"state file unusable`) {
				t.Fatalf("no error logged:\n%s", b.log())
			}
			g := startBackend(t, serveXfer)
			addBackend(t, b.admn, g.Addr())
			if stateBackends(t, state)[g.Addr()] == nil {
				t.Fatal("a fresh state file was not written")
			}
		})
	}
}

// TestUpgrade_FailedSuccessorKeepsServing: when the successor cannot start (here the binary
// was replaced by one that exits at once), the running process logs the failure, keeps the
// sockets, serves the balanced and admin ports again, and a later SIGHUP with a good binary
// upgrades as usual.
func TestUpgrade_FailedSuccessorKeepsServing(t *testing.T) {
	eachPlane(t, testUpgrade_FailedSuccessorKeepsServing)
}

func testUpgrade_FailedSuccessorKeepsServing(t *testing.T) {
	needBinary(t)
	dir := t.TempDir()
	bin, pidFile := filepath.Join(dir, "fulcrum"), filepath.Join(dir, "fulcrum.pid")
	good, err := os.ReadFile(fulcrumBin)
	if err != nil {
		t.Fatal(err)
	}
	replace := func(content []byte) {
		t.Helper()
		tmp := bin + ".new"
		if err := os.WriteFile(tmp, content, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, bin); err != nil {
			t.Fatal(err)
		}
	}
	replace(good)
	g := startBackend(t, serveXfer)
	b := startBalancerBin(t, bin, nil, "--pid-file", pidFile)
	t.Cleanup(func() { stopNewest(t, pidFile) })
	addBackend(t, b.admn, g.Addr())
	eventually(t, 10*time.Second, "the PID file names the balancer", func() bool { return readPID(pidFile) == b.pid() })

	replace([]byte("#!/bin/sh\nexit 3\n"))
	b.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 20*time.Second, "the failed upgrade is logged", func() bool { return strings.Contains(b.log(), `"msg":"upgrade failed; still serving"`) })
	if b.exited() || readPID(pidFile) != b.pid() {
		t.Fatalf("after a failed upgrade the balancer exited (%v) or lost the PID file", b.err)
	}
	addBackend(t, b.admn, g.Addr()) // the admin API serves again
	if err := xferRoundTrip(b.listen, 64<<10, 64<<10); err != nil {
		t.Fatalf("after a failed upgrade: %v", err)
	}

	replace(good)
	b.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 20*time.Second, "a good successor takes over", func() bool {
		pid := readPID(pidFile)
		return pid != 0 && pid != b.pid() && b.exited()
	})
	if b.err != nil {
		t.Fatalf("the old process exited with %v", b.err)
	}
	if _, ok := status(t, b.admn)[g.Addr()]; !ok {
		t.Fatal("the successor lost the registry")
	}
	if err := xferRoundTrip(b.listen, 64<<10, 64<<10); err != nil {
		t.Fatalf("after the upgrade: %v", err)
	}
}
