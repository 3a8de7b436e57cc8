package main

import (
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestFault_DescriptorStarvation: a balancer whose RLIMIT_NOFILE is 256 receives 1,000
// connection attempts that stay open. It must not crash or spin (its CPU over the episode is
// measured from /proc), and must serve again as soon as the descriptors come free.
//
// The hard limit is set too: since Go 1.19 the runtime raises the soft limit to the hard one
// at start, so a soft limit alone (ulimit -S) is undone before main runs.
func TestFault_DescriptorStarvation(t *testing.T) { eachPlane(t, testFault_DescriptorStarvation) }

func testFault_DescriptorStarvation(t *testing.T) {
	good := startBackend(t, serveXfer)
	b := startBalancerVia(t, []string{"sh", "-c", `ulimit -S -n 256 && ulimit -H -n 256 && exec "$@"`, "sh"}, "--backend", good.Addr())
	limits, _ := os.ReadFile("/proc/" + itoa(b.pid()) + "/limits")
	if !strings.Contains(string(limits), "Max open files            256                  256") {
		t.Fatalf("the balancer's descriptor limit is not 256:\n%s", limits)
	}
	if err := xferRoundTrip(b.listen, 4<<10, 4<<10); err != nil {
		t.Fatalf("before the episode: %v", err)
	}

	cpu0, err := cpuTicks(b.pid())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	conns, dialErrs := openMany(b.listen, 1000)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	time.Sleep(2 * time.Second) // the episode: 1,000 connections held against 256 descriptors
	if !alive(b.pid()) || b.exited() {
		t.Fatalf("the balancer died under descriptor starvation: %v", b.err)
	}
	peakFDs := fdCount(b.pid())
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	freed := time.Now()
	var recovered time.Duration
	eventually(t, 20*time.Second, "a new client served after the descriptors came free", func() bool {
		ok := xferRoundTrip(b.listen, 4<<10, 4<<10) == nil
		recovered = time.Since(freed)
		return ok
	})
	cpu1, err := cpuTicks(b.pid())
	if err != nil {
		t.Fatal(err)
	}
	wall := time.Since(start)
	share := float64(cpu1-cpu0) / 100 / wall.Seconds()
	settle(t, b)
	t.Logf("fd starvation: 1000 attempts (%d dial errors), balancer at %d descriptors of 256; served again %v after release; CPU %.2fs over %v (%.1f%% of one core)",
		dialErrs, peakFDs, recovered.Round(time.Millisecond), float64(cpu1-cpu0)/100, wall.Round(time.Millisecond), 100*share)
	if share > 0.5 {
		t.Fatalf("the starved balancer used %.0f%% of a core: it spins", 100*share)
	}
}

// openMany opens n connections, 50 at a time, and returns those that opened.
func openMany(addr string, n int) ([]net.Conn, int) {
	var mu sync.Mutex
	var conns []net.Conn
	errs := 0
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs++
				return
			}
			conns = append(conns, c)
		}()
	}
	wg.Wait()
	return conns, errs
}

// TestFault_SIGTERMDuring100Transfers: SIGTERM while 100 transfers are half done. The balancer
// stops accepting, every transfer finishes with its bytes checked, and it exits 0 before the
// drain timeout.
func TestFault_SIGTERMDuring100Transfers(t *testing.T) {
	eachPlane(t, testFault_SIGTERMDuring100Transfers)
}

func testFault_SIGTERMDuring100Transfers(t *testing.T) {
	g1, g2 := startBackend(t, serveXfer), startBackend(t, serveXfer)
	b := startBalancer(t, "--backend", g1.Addr(), "--backend", g2.Addr(), "--drain-timeout", "20s")
	const n = 100
	clients := halfSentTransfers(t, b.listen, n)
	eventually(t, 10*time.Second, "100 transfers in flight", func() bool { return activeConns(t, b.admn) == n })
	sent := time.Now()
	b.cmd.Process.Signal(syscall.SIGTERM)
	eventually(t, 10*time.Second, "the balancer starts draining", func() bool { return strings.Contains(b.log(), "shutting down") })

	var r clientRun
	var wg sync.WaitGroup
	for _, x := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); r.record(x.finish()) }()
	}
	wg.Wait()
	select {
	case <-b.done:
	case <-time.After(25 * time.Second):
		t.Fatal("the balancer did not exit within the drain timeout")
	}
	exitAfter := time.Since(sent)
	t.Logf("SIGTERM during %d transfers: %d finished, %d failed; exit %v after the signal (drain timeout 20s)", n, r.ok.Load(), r.failed.Load(), exitAfter.Round(time.Millisecond))
	if r.failed.Load() != 0 {
		t.Fatalf("%d transfers failed (first: %v)", r.failed.Load(), r.firstErr)
	}
	if b.err != nil {
		t.Fatalf("exit status: %v", b.err)
	}
	if strings.Contains(b.log(), "drain timeout") {
		t.Fatal("the drain timed out and closed connections")
	}
	g1.Stop() // waits for the handlers, so served is final
	g2.Stop()
	if g1.Served()+g2.Served() != n {
		t.Fatalf("backends served %d of %d", g1.Served()+g2.Served(), n)
	}
}
