//go:build linux

package listener

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/testbed"
)

// The hazards of a loop that holds its P while it waits (eloop_wait_linux.go). Each test
// below lets a held wait last an hour (heldWaitForever), so that only the guards can end it:
// the spare-P rule, the fall back to the ordinary wait when idle, and the yield when a signal
// interrupts the wait. The deadlines are generous: they catch a hang, not a slow machine.

// heldWaitForever is the held-wait bound the tests set: far longer than any test.
const heldWaitForever = int(time.Hour / time.Millisecond)

// hangAfter is how long a test waits for what a held P could block forever.
const hangAfter = 60 * time.Second

// startHeldLoops serves an echo backend through one event loop whose held waits are bounded
// by heldWait ms, on a loopback port, until the test ends.
func startHeldLoops(t *testing.T, heldWait int) (*EventLoops, string) {
	t.Helper()
	p := resPool(t, resBackend(t, resEcho))
	el := NewEventLoops(1)
	el.heldWait = heldWait
	cfg := &Server{Picker: p, Logger: quiet, ConnectTimeout: 5 * time.Second}
	ls := newLoopServer(el, cfg, true)
	return el, serveLoopback(t, ls, p, ls.book.stats)
}

// heldStats sums the held waits of el's loops and how many of them a signal interrupted,
// read on the loops themselves.
func heldStats(el *EventLoops) (waits, interrupts uint64) {
	el.mu.Lock()
	loops := el.loops
	el.mu.Unlock()
	for _, l := range loops {
		l.call(func(l *loop) { waits, interrupts = waits+l.heldWaits, interrupts+l.heldInterrupts })
	}
	return waits, interrupts
}

// setProcs sets GOMAXPROCS for the test and gives the runtime its default back afterwards.
func setProcs(t *testing.T, n int) {
	t.Helper()
	runtime.GOMAXPROCS(n)
	t.Cleanup(runtime.SetDefaultGOMAXPROCS)
}

// pingPong is a small-message load: conns connections that each send 64 bytes and read them
// back, over and over, until end.
type pingPong struct {
	stop  chan struct{}
	wg    sync.WaitGroup
	trips atomic.Int64
	mu    sync.Mutex
	err   error // the first error of a connection
}

func startPingPong(t *testing.T, addr string, conns int) *pingPong {
	t.Helper()
	pp := &pingPong{stop: make(chan struct{})}
	for range conns {
		c := resDial(t, addr)
		pp.wg.Add(1)
		go pp.run(c)
	}
	t.Cleanup(func() { pp.end() })
	resEventually(t, "the ping-pong load running", func() bool { return pp.trips.Load() >= int64(100*conns) })
	return pp
}

// run is one connection's round trips; it ends at stop or on the first error.
func (pp *pingPong) run(c net.Conn) {
	defer pp.wg.Done()
	msg, got := make([]byte, 64), make([]byte, 64)
	for {
		select {
		case <-pp.stop:
			return
		default:
		}
		c.SetDeadline(time.Now().Add(hangAfter))
		if _, err := c.Write(msg); err != nil {
			pp.fail(err)
			return
		}
		if _, err := io.ReadFull(c, got); err != nil {
			pp.fail(err)
			return
		}
		pp.trips.Add(1)
	}
}

func (pp *pingPong) fail(err error) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.err == nil {
		pp.err = err
	}
}

// end stops the load, waits for its connections' goroutines, and returns the first error.
// It is safe to call twice.
func (pp *pingPong) end() error {
	select {
	case <-pp.stop:
	default:
		close(pp.stop)
	}
	pp.wg.Wait()
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return pp.err
}

// within runs f on a goroutine of its own and fails the test if it has not returned after
// hangAfter.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(hangAfter):
		t.Fatalf("%s: not done after %v; a loop holds its P", what, hangAfter)
	}
}

// TestHeldWaitOnlyWithSpareP: loops hold their Ps only while fewer loops than GOMAXPROCS run
// in the process, counting every set of loops, and they see GOMAXPROCS change under load.
func TestHeldWaitOnlyWithSpareP(t *testing.T) {
	for _, tc := range []struct{ loops, procs int }{{1, 1}, {1, 2}, {2, 2}, {3, 2}, {7, 8}, {8, 8}, {63, 64}} {
		if got, want := holdsP(tc.loops, tc.procs), tc.loops < tc.procs; got != want {
			t.Errorf("holdsP(%d loops, GOMAXPROCS %d) = %v, want %v", tc.loops, tc.procs, got, want)
		}
	}
	load := func(t *testing.T, addr string) {
		t.Helper()
		if err := startPingPong(t, addr, 4).end(); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("GOMAXPROCS 1, one loop", func(t *testing.T) {
		setProcs(t, 1)
		el, addr := startHeldLoops(t, heldWaitForever)
		load(t, addr)
		if waits, _ := heldStats(el); waits != 0 {
			t.Fatalf("%d held waits, want none (no P to spare)", waits)
		}
	})
	t.Run("GOMAXPROCS 2, two sets of one loop", func(t *testing.T) {
		setProcs(t, 2)
		el1, addr1 := startHeldLoops(t, heldWaitForever)
		el2, addr2 := startHeldLoops(t, heldWaitForever)
		// Loops start with their Server's Serve, on its goroutine: the first may turn to
		// held waits before the second runs, and check again recheckEvery waits later.
		resEventually(t, "both loops running", func() bool { return loopsRunning.Load() >= 2 })
		b1, _ := heldStats(el1)
		b2, _ := heldStats(el2)
		for _, addr := range []string{addr1, addr2} {
			pp := startPingPong(t, addr, 4)
			resEventually(t, "2,000 round trips", func() bool { return pp.trips.Load() >= 2000 })
			if err := pp.end(); err != nil {
				t.Fatal(err)
			}
		}
		w1, _ := heldStats(el1)
		w2, _ := heldStats(el2)
		if w1-b1 > recheckEvery || w2-b2 > recheckEvery {
			t.Fatalf("%d and %d held waits over 2,000 round trips each, want at most %d (no P to spare)", w1-b1, w2-b2, recheckEvery)
		}
	})
	t.Run("GOMAXPROCS 2, one loop, then 1 under load", func(t *testing.T) {
		setProcs(t, 2)
		el, addr := startHeldLoops(t, heldWaitForever)
		pp := startPingPong(t, addr, 4)
		if waits, _ := heldStats(el); waits == 0 {
			t.Fatal("no held wait under load")
		}
		runtime.GOMAXPROCS(1)
		before, _ := heldStats(el)
		from := pp.trips.Load()
		resEventually(t, "more round trips", func() bool { return pp.trips.Load() >= from+2000 })
		if err := pp.end(); err != nil {
			t.Fatal(err)
		}
		// A held wait that GOMAXPROCS's stop-the-world did not interrupt runs on until the
		// loop checks again, at most recheckEvery waits later.
		if after, _ := heldStats(el); after-before > recheckEvery {
			t.Fatalf("%d held waits after GOMAXPROCS fell to 1, want at most %d", after-before, recheckEvery)
		}
	})
}

// TestHeldWaitGivesThePBackWhenIdle: once its load stops, a loop's held wait times out and
// its next wait is the ordinary one, a system call the runtime knows of, with the P free.
func TestHeldWaitGivesThePBackWhenIdle(t *testing.T) {
	setProcs(t, 2)
	el, addr := startHeldLoops(t, heldWaitMillis)
	pp := startPingPong(t, addr, 8)
	if err := pp.end(); err != nil {
		t.Fatal(err)
	}
	if waits, _ := heldStats(el); waits == 0 {
		t.Fatal("no held wait under load: the test does not test what it says")
	}
	// Nothing else of this test is in a system call: the loop, in the ordinary wait, is.
	resEventually(t, "the idle loop in a system call the runtime knows of", func() bool { return inSyscall() >= 1 })
}

// inSyscall is how many goroutines are in a system call that the runtime knows of.
func inSyscall() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines/not-in-go:goroutines"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// TestHeldWaitLetsGCRun: a collection (two stop-the-worlds, and a scan of the loop's stack)
// completes while the loop is under load, and while it sits in a held wait with nothing to
// do, which only the runtime's signal can end.
func TestHeldWaitLetsGCRun(t *testing.T) {
	setProcs(t, 2)
	el, addr := startHeldLoops(t, heldWaitForever)
	pp := startPingPong(t, addr, 8)
	for i := range 20 {
		within(t, fmt.Sprintf("runtime.GC %d under load", i), runtime.GC)
	}
	if err := pp.end(); err != nil {
		t.Fatal(err)
	}

	// heldStats wakes the loop with a task, so that its next wait is held; the collection
	// must then interrupt it.
	resEventually(t, "a collection interrupts a held wait", func() bool {
		within(t, "runtime.GC while the loop waits, held", runtime.GC)
		waits, interrupts := heldStats(el)
		if waits == 0 {
			t.Fatal("no held wait: the test does not test what it says")
		}
		return interrupts > 0
	})
}

// TestHeldWaitLeavesCPUForOthers: while the loop is busy, other goroutines (an HTTP server,
// as the admin API is) keep being served, with a P to spare and without one.
func TestHeldWaitLeavesCPUForOthers(t *testing.T) {
	for _, procs := range []int{2, 1} {
		t.Run(fmt.Sprintf("GOMAXPROCS %d", procs), func(t *testing.T) {
			setProcs(t, procs)
			_, addr := startHeldLoops(t, heldWaitForever)
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				io.WriteString(w, "ok")
			}))
			t.Cleanup(api.Close)
			client := &http.Client{Timeout: hangAfter}
			t.Cleanup(client.CloseIdleConnections)

			pp := startPingPong(t, addr, 8)
			for i := range 50 {
				within(t, fmt.Sprintf("HTTP request %d under load", i), func() { getOK(t, client, api.URL) })
			}
			if err := pp.end(); err != nil {
				t.Fatal(err)
			}
			// The load has stopped: the loop's last waits were held.
			within(t, "HTTP request after the load", func() { getOK(t, client, api.URL) })
		})
	}
}

// getOK fetches url and checks the answer; called off the test's goroutine, it reports with
// t.Error.
func getOK(t *testing.T, client *http.Client, url string) {
	resp, err := client.Get(url)
	if err != nil {
		t.Error(err)
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != "ok" {
		t.Errorf("GET %s: %q, %v", url, b, err)
	}
}

// TestHelperHeldWaitChild is the child process of TestHeldWaitExitsOnSIGTERM: one event loop
// whose held waits only a signal ends, in front of FULCRUM_HELD_BACKEND. It prints "ADDR
// <addr>", answers each line on stdin with "HELD <held waits>", and on SIGTERM shuts the
// server down at once, prints "BYE" and exits 0.
func TestHelperHeldWaitChild(t *testing.T) {
	backend := os.Getenv("FULCRUM_HELD_BACKEND")
	if backend == "" {
		t.Skip("helper process of TestHeldWaitExitsOnSIGTERM")
	}
	sigterm := make(chan os.Signal, 1)
	signal.Notify(sigterm, syscall.SIGTERM)
	defer signal.Stop(sigterm)
	p := resPool(t, backend)
	el := NewEventLoops(1)
	el.heldWait = heldWaitForever
	ls := newLoopServer(el, &Server{Picker: p, Logger: quiet, ConnectTimeout: 5 * time.Second}, true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ls.Serve(ln)
	shutdown := func(drain time.Duration) {
		sctx, cancel := context.WithTimeout(context.Background(), drain)
		defer cancel()
		ls.Shutdown(sctx)
	}
	done := make(chan struct{})
	defer close(done)
	go func() { // the exit on SIGTERM; main's stdin read may block until then
		select {
		case <-sigterm:
			shutdown(0) // no drain: the parent's connections would hold it to the end
			fmt.Println("BYE")
			os.Exit(0)
		case <-done:
		}
	}()
	fmt.Printf("ADDR %s\n", ln.Addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		waits, _ := heldStats(el)
		fmt.Printf("HELD %d\n", waits)
	}
	shutdown(10 * time.Second) // stdin closed before any SIGTERM: the parent gave up
}

// TestHeldWaitExitsOnSIGTERM: a process whose loop is busy, or idle in a held wait, exits
// promptly on SIGTERM, with a P to spare (held waits in use) and without one (none made).
func TestHeldWaitExitsOnSIGTERM(t *testing.T) {
	backend := resBackend(t, resEcho)
	for _, procs := range []int{2, 1} {
		for _, busy := range []bool{true, false} {
			t.Run(fmt.Sprintf("GOMAXPROCS %d busy %v", procs, busy), func(t *testing.T) {
				ch := startChild(t, "TestHelperHeldWaitChild", "FULCRUM_HELD_BACKEND="+backend, "GOMAXPROCS="+strconv.Itoa(procs))
				addr := ch.line(t, "ADDR ")
				pp := startPingPong(t, addr, 8)
				if !busy {
					if err := pp.end(); err != nil {
						t.Fatal(err)
					}
				}
				fmt.Fprintln(ch.in, "held") // after an event (this task) the loop's next wait is held
				waits, err := strconv.ParseUint(ch.line(t, "HELD "), 10, 64)
				switch {
				case err != nil:
					t.Fatal(err)
				case procs > 1 && waits == 0:
					t.Fatal("no held wait under load: the test does not test what it says")
				case procs == 1 && waits != 0:
					t.Fatalf("GOMAXPROCS 1: %d held waits, want none", waits)
				}
				if err := syscall.Kill(ch.PID(), syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				testbed.Eventually(t, hangAfter, "the child exits after SIGTERM", func() bool { return exited(ch.PID()) })
				ch.line(t, "BYE")
				pp.end() // the shutdown ended its connections: errors expected
			})
		}
	}
}

// exited reports whether process pid has exited (a zombie until its parent waits for it).
func exited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}
