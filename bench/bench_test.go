package bench

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/internal/testbed"
	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testbed.Eventually(t, 30*time.Second, what, cond)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startBackends starts n in-process backends, closed at the end of the test.
func startBackends(t *testing.T, n int) *Servers {
	t.Helper()
	bs, err := StartBackends(n, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	return bs
}

// startFulcrum runs fulcrum's own listener and pool in this process in front of bs, with its
// admin API for the counts, and returns the target.
func startFulcrum(t *testing.T, bs Backends) Target {
	t.Helper()
	p := &pool.Pool{Logger: quietLogger()}
	for _, a := range bs.Addrs() {
		addr, err := pool.ParseAddress(a)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.RegisterStatic(addr, 1); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &listener.Server{Picker: p, Logger: quietLogger()}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	api := httptest.NewServer((&admin.API{Registry: p, Logger: quietLogger()}).Handler())
	t.Cleanup(func() {
		api.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("fulcrum shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, listener.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return Target{Name: Fulcrum, Addr: ln.Addr().String(), PID: os.Getpid(),
		Counts: FulcrumCounts(api.Listener.Addr().String())}
}

var smokeConfig = Config{Duration: 700 * time.Millisecond, Conns: 4, Workers: 4, PingConns: 4, Hold: 200}

// runParsed runs one scenario and returns its result as parsed back from its JSON line.
func runParsed(t *testing.T, r *Runner, scenario string) Result {
	t.Helper()
	res, err := r.Run(context.Background(), scenario)
	if err != nil {
		t.Fatal(err)
	}
	line := res.JSON()
	var back Result
	if err := json.Unmarshal([]byte(line), &back); err != nil {
		t.Fatalf("result line %q does not parse: %v", line, err)
	}
	if back.Scenario != scenario || back.Target != r.Target.Name {
		t.Fatalf("result line %q: scenario or target wrong", line)
	}
	t.Log(res.Text())
	return back
}

func positive(t *testing.T, res Result, names ...string) {
	t.Helper()
	for _, n := range names {
		if v, ok := res.Metrics[n]; !ok || !(v > 0) || math.IsInf(v, 0) {
			t.Errorf("%s %s = %v (present %v), want a positive number", res.Scenario, n, v, ok)
		}
	}
}

func equal(t *testing.T, res Result, a, b string) {
	t.Helper()
	if res.Metrics[a] != res.Metrics[b] {
		t.Errorf("%s: %s = %v but %s = %v", res.Scenario, a, res.Metrics[a], b, res.Metrics[b])
	}
}

func ordered(t *testing.T, res Result, names ...string) {
	t.Helper()
	for i := 1; i < len(names); i++ {
		if res.Metrics[names[i-1]] > res.Metrics[names[i]] {
			t.Errorf("%s: %s = %v > %s = %v", res.Scenario, names[i-1], res.Metrics[names[i-1]], names[i], res.Metrics[names[i]])
		}
	}
}

// TestScenariosThroughFulcrum is the smoke run of every scenario against an in-process
// fulcrum: every number is there, positive, and agrees with the others.
func TestScenariosThroughFulcrum(t *testing.T) {
	bs := startBackends(t, 4)
	r := &Runner{Backends: bs, Target: startFulcrum(t, bs), Config: smokeConfig}
	t.Run(Throughput, func(t *testing.T) {
		res := runParsed(t, r, Throughput)
		positive(t, res, "upload_mb_s", "download_mb_s", "upload_bytes", "download_bytes",
			"cpu_us_per_mb_up", "cpu_us_per_mb_down", "cpu_pct_up", "cpu_pct_down")
		equal(t, res, "upload_bytes", "sink_bytes")
		equal(t, res, "download_bytes", "source_bytes")
		if len(res.Notes) != 0 {
			t.Errorf("notes: %q", res.Notes)
		}
	})
	for _, sc := range []struct {
		name, rate, count, perOp string
		conns                    int
	}{
		{Connrate, "conns_per_s", "transactions", "cpu_us_per_conn", 4},
		{Latency, "requests_per_s", "requests", "cpu_us_per_req", 4},
		{Latency1, "requests_per_s", "requests", "cpu_us_per_req", 1},
	} {
		t.Run(sc.name, func(t *testing.T) {
			res := runParsed(t, r, sc.name)
			positive(t, res, sc.rate, sc.count, "p50_us", "p99_us", "p999_us", sc.perOp, "cpu_pct", "client_cpu_pct")
			if res.Conns != sc.conns {
				t.Errorf("conns = %d, want %d", res.Conns, sc.conns)
			}
			ordered(t, res, "p50_us", "p99_us", "p999_us")
			if res.Metrics["errors"] != 0 {
				t.Errorf("errors: %v %q", res.Metrics["errors"], res.Notes)
			}
			if got, want := res.Metrics[sc.rate], res.Metrics[sc.count]/res.Seconds; math.Abs(got-want) > want*1e-6 {
				t.Errorf("%s = %v, want %s / seconds = %v", sc.rate, got, sc.count, want)
			}
		})
	}
	t.Run(Idle, func(t *testing.T) {
		res := runParsed(t, r, Idle)
		positive(t, res, "open_s", "held", "rss_before_mib", "rss_after_mib", "fds_per_conn")
		if res.Metrics["held"] != 200 || res.Conns != 200 {
			t.Errorf("held %v of %d, want 200", res.Metrics["held"], res.Conns)
		}
	})
	t.Run(Balance, func(t *testing.T) {
		res := runParsed(t, r, Balance)
		positive(t, res, "held", "backend_min", "backend_max")
		if res.Metrics["held"] != 200 || res.Metrics["spread"] > 1 || res.Metrics["balancer_agrees"] != 1 {
			t.Errorf("held %v spread %v agrees %v, want 200, <= 1, 1 (%q)", res.Metrics["held"],
				res.Metrics["spread"], res.Metrics["balancer_agrees"], res.Notes)
		}
		if res.Metrics["backend_min"]*4 > 200 || res.Metrics["backend_max"]*4 < 200 {
			t.Errorf("min %v max %v of 200 over 4 backends", res.Metrics["backend_min"], res.Metrics["backend_max"])
		}
	})
	eventually(t, "backends to see every connection closed", func() bool {
		st, _ := bs.Stats()
		for _, s := range st {
			if s.Active != 0 {
				return false
			}
		}
		return true
	})
}

// TestDirect runs the reference target: a backend itself, no balancer.
func TestDirect(t *testing.T) {
	bs := startBackends(t, 2)
	r := &Runner{Backends: bs, Target: Target{Name: Direct, Addr: bs.Addrs()[0], Direct: true},
		Config: Config{Duration: 300 * time.Millisecond, Conns: 2, Hold: 50}}
	res := runParsed(t, r, Connrate)
	positive(t, res, "conns_per_s", "client_cpu_pct", "machine_cpu_us_per_conn", "machine_cpu_pct")
	if _, ok := res.Metrics["cpu_us_per_conn"]; ok || len(res.Notes) != 0 {
		t.Errorf("direct connrate: %v %q, want no balancer CPU and no note", res.Metrics, res.Notes)
	}
	res = runParsed(t, r, Idle)
	if _, ok := res.Metrics["rss_per_conn_kib"]; ok || res.Metrics["held"] != 50 {
		t.Errorf("direct idle: %v, want 50 held and no balancer memory", res.Metrics)
	}
	if _, ok := res.Metrics["kernel_slab_per_conn_kib"]; !ok {
		t.Errorf("direct idle: %v, want the kernel's slab per connection: the baseline of every peer", res.Metrics)
	}
	res = runParsed(t, r, Balance)
	if len(res.Metrics) != 0 || len(res.Notes) == 0 {
		t.Errorf("direct balance: %v %q, want skipped with a note", res.Metrics, res.Notes)
	}
	st, _ := bs.Stats()
	if st[1].Accepted != 0 {
		t.Errorf("direct load reached the second backend: %+v", st[1])
	}
}

func TestUnknownScenario(t *testing.T) {
	r := &Runner{Backends: startBackends(t, 1), Target: Target{Name: "x", Addr: "127.0.0.1:1"}}
	if _, err := r.Run(context.Background(), "nope"); err == nil {
		t.Fatal("unknown scenario ran")
	}
}

// TestBackendModes checks each backend mode by hand: what the scenarios' numbers rest on.
func TestBackendModes(t *testing.T) {
	bs := startBackends(t, 1)
	addr := bs.Addrs()[0]
	t.Run("echo", func(t *testing.T) {
		c := dialT(t, addr)
		req := request()
		c.Write(req)
		got := make([]byte, len(req))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != string(req) {
			t.Fatalf("echo: %q %v", got, err)
		}
	})
	t.Run("request", func(t *testing.T) {
		c := dialT(t, addr)
		c.Write(transactRequest()[:30]) // the backend waits for the whole request
		c.Write(transactRequest()[30:])
		got, err := io.ReadAll(c)
		if err != nil || len(got) != replySize || got[0] != ModeRequest {
			t.Fatalf("reply %q %v, want %d bytes starting with %q and then EOF", got, err, replySize, ModeRequest)
		}
	})
	t.Run("sink", func(t *testing.T) {
		c := dialT(t, addr)
		c.Write([]byte{ModeSink})
		c.Write(make([]byte, 12345))
		c.CloseWrite()
		var reply [8]byte
		if _, err := io.ReadFull(c, reply[:]); err != nil || reply[6] != 0x30 || reply[7] != 0x39 {
			t.Fatalf("sink count: %x %v, want 12345", reply, err)
		}
	})
	t.Run("source", func(t *testing.T) {
		c := dialT(t, addr)
		c.Write([]byte{ModeSource})
		buf := make([]byte, 1000)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		c.CloseWrite()
		n, err := io.Copy(io.Discard, c)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "the source to count what it sent", func() bool {
			st, _ := bs.Stats()
			return st[0].Sourced == n+1000 && st[0].Active == 0
		})
	})
}

func dialT(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// TestServeBackendsProtocol speaks the child protocol over pipes: hello, stats, EOF stops it.
func TestServeBackendsProtocol(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- ServeBackends(3, nil, inR, outW); outW.Close() }()
	dec := json.NewDecoder(outR)
	var hello childHello
	if err := dec.Decode(&hello); err != nil || len(hello.Addrs) != 3 {
		t.Fatalf("hello: %+v %v", hello, err)
	}
	io.WriteString(inW, "stats\n")
	var st []BackendStats
	if err := dec.Decode(&st); err != nil || len(st) != 3 || st[2].Addr != hello.Addrs[2] {
		t.Fatalf("stats: %+v %v", st, err)
	}
	inW.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestHoldClamped: a balancer whose descriptors cannot hold --hold connections gets fewer,
// and the result says why.
func TestHoldClamped(t *testing.T) {
	bs := startBackends(t, 2)
	limit, err := fileLimit(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	fds := (limit - headroom) / 20 // room for 20 connections
	r := &Runner{Backends: bs, Target: Target{Name: "tight", Addr: bs.Addrs()[0], PID: os.Getpid(), FDsPerConn: fds},
		Config: Config{Hold: 100}}
	n, why, err := r.holdLimit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 20 || !strings.Contains(why, "holding 20 connections, not 100") || !strings.Contains(why, "open-file limit") {
		t.Fatalf("holdLimit = %d, %q; want 20 and the reason", n, why)
	}
}

// TestProgressLine: with a Progress writer the runner rewrites one line as it goes and clears it.
func TestProgressLine(t *testing.T) {
	bs := startBackends(t, 1)
	var out syncBuffer
	r := &Runner{Backends: bs, Target: Target{Name: Direct, Addr: bs.Addrs()[0], Direct: true},
		Config: Config{Duration: 700 * time.Millisecond, Conns: 1}, Progress: &out}
	if _, err := r.Run(context.Background(), Latency); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if !strings.Contains(s, "\r\033[Klatency direct: ") || !strings.HasSuffix(s, "\r\033[K") {
		t.Fatalf("progress output %q", s)
	}
}

// syncBuffer is a bytes.Buffer safe for the progress goroutine and the test.
type syncBuffer = testbed.SyncBuffer
