package listener

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// The child process of TestAcceptSurvivesEMFILE: a proxy with a soft limit of 64 descriptors.
// It prints "ADDR <addr>", then answers each line on stdin: "hold" takes one more descriptor
// (answered "HELD"), anything else "STATS <accept errors> <accepted> <dial errors> <backend
// state>". It exits when stdin closes.
func TestHelperEMFILEChild(t *testing.T) {
	backend := os.Getenv("FULCRUM_EMFILE_BACKEND")
	if backend == "" {
		t.Skip("helper process of TestAcceptSurvivesEMFILE")
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = 64
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	p := resPool(t, backend)
	plane := DataPlane(os.Getenv("FULCRUM_EMFILE_PLANE")) // a test plane (sockmap-now) too
	s := &Server{Picker: p, Retries: 0, Logger: quiet, DataPlane: plane}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	fmt.Printf("ADDR %s\n", ln.Addr())
	var held []*os.File
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "hold" {
			held = append(held, holdDescriptor(t))
			fmt.Println("HELD")
			continue
		}
		st := s.Stats()
		fmt.Printf("STATS %d %d %d %s\n", st.AcceptErrs.Load(), st.Accepted.Load(), st.DialErrors.Load(), p.Snapshot()[0].State)
	}
	s.Shutdown(t.Context())
	for _, f := range held {
		f.Close()
	}
}

// holdDescriptor opens a descriptor the child keeps. Every descriptor may be taken for a moment
// by a client whose backend dial is about to fail and free it, so it retries until one is free.
func holdDescriptor(t *testing.T) *os.File {
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := os.Open(os.DevNull)
		if err == nil {
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("hold a descriptor: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

// emfileChild is the parent's handle on the child process.
type emfileChild struct{ *child }

func startEMFILEChild(t *testing.T, backend string) (*emfileChild, string) {
	t.Helper()
	ch := &emfileChild{startChild(t, "TestHelperEMFILEChild",
		"FULCRUM_EMFILE_BACKEND="+backend, "FULCRUM_EMFILE_PLANE="+string(planeOf(t)))}
	return ch, ch.line(t, "ADDR ")
}

type childStats struct {
	acceptErrs, accepted, dialErrs uint64
	state                          string
}

func (ch *emfileChild) stats(t *testing.T) childStats {
	t.Helper()
	fmt.Fprintln(ch.in, "stats")
	var st childStats
	if _, err := fmt.Sscan(ch.line(t, "STATS "), &st.acceptErrs, &st.accepted, &st.dialErrs, &st.state); err != nil {
		t.Fatal(err)
	}
	return st
}

func (ch *emfileChild) hold(t *testing.T) {
	t.Helper()
	fmt.Fprintln(ch.in, "hold")
	ch.line(t, "HELD")
}

// cpuTime is the user+system CPU a process has used, from /proc/PID/stat.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
}

// TestAcceptSurvivesEMFILE holds more connections than a child proxy has descriptors for: its
// accept loop must back off (5 ms doubling to 1 s) instead of spinning, and serve again as
// soon as descriptors free up.
func TestAcceptSurvivesEMFILE(t *testing.T) { eachPlane(t, testAcceptSurvivesEMFILE) }

func testAcceptSurvivesEMFILE(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	backend := resBackend(t, resEcho)
	ch, addr := startEMFILEChild(t, backend)
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 100 { // 2 descriptors per proxied connection: far beyond 64
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	resEventually(t, "child runs out of descriptors", func() bool {
		st := ch.stats(t)
		return st.acceptErrs > 0 || st.dialErrs > 0
	})
	if ch.stats(t).acceptErrs == 0 {
		// One descriptor short of the limit (which depends on what else the process has open),
		// every accept succeeds and the backend's socket(2) fails instead. Take that last
		// descriptor, so that the next client meets EMFILE at accept.
		ch.hold(t)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		resEventually(t, "child's accept hits EMFILE", func() bool { return ch.stats(t).acceptErrs > 0 })
	}

	// A measurement window, not synchronisation: count what the accept loop does meanwhile.
	const window = 2 * time.Second
	st0, cpu0 := ch.stats(t), cpuTime(t, ch.cmd.Process.Pid)
	time.Sleep(window)
	st, cpu := ch.stats(t), cpuTime(t, ch.cmd.Process.Pid)-cpu0
	errs, accepted := st.acceptErrs-st0.acceptErrs, st.accepted-st0.accepted
	t.Logf("under EMFILE for %v: %d accept errors, %d accepted, %v CPU", window, errs, accepted, cpu)
	// A success resets the backoff, so each accepted client (whose dial then fails with EMFILE
	// and which is closed) may be followed by a short run of errors; without successes the
	// backoff allows about 10 retries in 2 s. A spinning loop makes many thousands.
	if errs > 2*accepted+20 {
		t.Errorf("%d accept errors for %d accepts in %v: the accept loop spins", errs, accepted, window)
	}
	if cpu > window/2 {
		t.Errorf("child used %v CPU in %v: the accept loop spins", cpu, window)
	}

	for _, c := range held {
		c.Close()
	}
	held = nil
	start := time.Now()
	resEventually(t, "child serves again", func() bool {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		return resEchoes(t, c, "back")
	})
	t.Logf("served again %v after descriptors freed", time.Since(start))
	if st := ch.stats(t); st.state != string(pool.StateStatic) {
		t.Errorf("backend is %s after the balancer ran out of descriptors; want static: not its fault", st.state)
	}
}
