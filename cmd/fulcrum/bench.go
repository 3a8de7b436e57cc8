package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/fulcrumlb/fulcrum/bench"
)

// benchCommand is `fulcrum bench` with its `compare` and hidden `backends` subcommands.
func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure a balancer: throughput, connection rate, latency, idle memory, balance",
		Description: "Starts its own backends and, unless --target or --direct, its own fulcrum, then runs\n" +
			"bounded loads on loopback. `fulcrum bench compare` runs the same against direct, fulcrum,\n" +
			"HAProxy and nginx in interleaved rounds.",
		Flags:       append(loadFlags(3), benchFlags()...),
		Action:      runBench,
		Subcommands: []*cli.Command{compareCommand(), realCommand(), manyBackendsCommand(), backendsCommand()},
	}
}

// loadFlags size the loads; shared by bench and bench compare.
func loadFlags(defaultSecs int) []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "scenario", Usage: "scenario to run (repeatable): " + strings.Join(bench.Scenarios, ", ") + " (default: all)"},
		&cli.DurationFlag{Name: "duration", Value: secs(defaultSecs), Usage: "how long each timed load runs"},
		&cli.IntFlag{Name: "conns", Value: 8, Usage: "throughput's connections"},
		&cli.IntFlag{Name: "workers", Value: 16, Usage: "connrate's clients, each one connection at a time"},
		&cli.IntFlag{Name: "ping-conns", Value: 32, Usage: "latency's persistent connections (latency1 has one)"},
		&cli.IntFlag{Name: "client-threads", Value: 1, Usage: "OS threads of the connrate and latency client"},
		&cli.IntFlag{Name: "hold", Value: 10000, Usage: "connections idle and balance hold (clamped to what the open-file limits fit)"},
		&cli.IntFlag{Name: "backends", Value: 4, Usage: "how many bench backends to start"},
		&cli.BoolFlag{Name: "json", Usage: "print one JSON object per result line"},
		&cli.StringSliceFlag{Name: "fulcrum-arg", Usage: "extra serve argument for the fulcrum the bench starts (repeatable), e.g. --fulcrum-arg=--data-plane=epoll"},
	}
}

func benchFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "target", Usage: "an already-running balancer `ADDR` in front of the bench's backends"},
		&cli.StringFlag{Name: "target-admin", Usage: "fulcrum admin `ADDR` of --target, to check its counts in balance"},
		&cli.IntFlag{Name: "target-pid", Usage: "process `PID` of --target, to measure its CPU and memory"},
		&cli.IntSliceFlag{Name: "backend-ports", Usage: "ports for the bench's backends (with --target: the ports the balancer forwards to)"},
		&cli.BoolFlag{Name: "direct", Usage: "connect straight to one backend: the reference"},
	}
}

func compareCommand() *cli.Command {
	return &cli.Command{
		Name:  "compare",
		Usage: "run every scenario against direct, fulcrum, HAProxy and nginx in interleaved rounds",
		Flags: append(loadFlags(3),
			&cli.IntFlag{Name: "rounds", Value: 5, Usage: "interleaved rounds (at least 3)"},
			&cli.StringSliceFlag{Name: "peer", Usage: "peer to compare (repeatable): " + strings.Join(bench.Peers, ", ") +
				" (default: " + strings.Join(bench.DefaultPeers, ", ") + ", those installed, fulcrum-goroutine when serve has --data-plane, yardstick with --yardstick, and sockmap-yardstick with --sockmap-yardstick)"},
			&cli.StringFlag{Name: "yardstick", Usage: "the yardstick balancer to compare with: its binary, or its source `PATH` (a folder with go.mod, built with go build); adds the yardstick peer to the default peers"},
			&cli.StringSliceFlag{Name: "yardstick-env", Usage: "`KEY=VALUE` added to the yardstick peers' environment after their defaults (yardstick: EVL_LOOPS=1 EVL_RAWWAIT=0 GOMAXPROCS=2, fulcrum's set-up; yardstick-rawwait: EVL_LOOPS=1 EVL_RAWWAIT=1 GOMAXPROCS=1) (repeatable)"},
			&cli.StringFlag{Name: "sockmap-yardstick", Usage: "the in-kernel sockmap prototype to compare fulcrum-sockmap with: its binary, or its source `PATH` (a folder with go.mod, built with go build); it needs root and forwards to the first backend only; adds the sockmap-yardstick peer to the default peers"},
			&cli.StringFlag{Name: "out", Value: filepath.Join("bench", "RESULTS.md"), Usage: "Markdown report `FILE` (empty: none)"},
			&cli.StringFlag{Name: "chart", Usage: "chart `FILE` the report links, .png or .svg, drawn by fulcrum-chart from the report's .json (default: the report's name with .png)"},
		),
		Action: runCompare,
	}
}

func realCommand() *cli.Command {
	return &cli.Command{
		Name:  "real",
		Usage: "run wrk, redis-benchmark and pgbench through fulcrum and HAProxy to two real servers each",
		Description: "Uses the tools and servers it finds (wrk + nginx, redis-benchmark + redis-server, pgbench +\n" +
			"PostgreSQL); installs nothing. A suite whose tools are missing is skipped with the reason.",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "suite", Usage: "suite to run (repeatable): " + strings.Join(bench.RealSuites, ", ") + " (default: all)"},
			&cli.StringSliceFlag{Name: "peer", Usage: "balancer (repeatable): fulcrum, fulcrum-goroutine, haproxy, nginx (default: fulcrum, haproxy, and fulcrum-goroutine when serve has --data-plane)"},
			&cli.IntFlag{Name: "rounds", Value: 3, Usage: "interleaved rounds (at least 3)"},
			&cli.DurationFlag{Name: "duration", Value: secs(3), Usage: "how long wrk and pgbench run"},
			&cli.IntFlag{Name: "redis-requests", Value: 1_000_000, Usage: "redis-benchmark's requests per test (SET, GET)"},
			&cli.IntFlag{Name: "client-threads", Value: 1, Usage: "threads of wrk, redis-benchmark and pgbench"},
			&cli.StringSliceFlag{Name: "fulcrum-arg", Usage: "extra serve argument for the fulcrum the bench starts (repeatable)"},
			&cli.StringFlag{Name: "out", Value: filepath.Join("bench", "RESULTS-real.md"), Usage: "Markdown report `FILE` (empty: none)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object per run"},
		},
		Action: runReal,
	}
}

func runReal(c *cli.Context) error {
	for _, s := range c.StringSlice("suite") {
		if !contains(bench.RealSuites, s) {
			return fmt.Errorf("--suite %q: want one of %s", s, strings.Join(bench.RealSuites, ", "))
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := bench.RunReal(ctx, bench.RealConfig{
		Exe: exe, Suites: c.StringSlice("suite"), Peers: c.StringSlice("peer"), Rounds: c.Int("rounds"),
		Duration: c.Duration("duration"), RedisRequests: c.Int("redis-requests"), Threads: c.Int("client-threads"),
		FulcrumArgs: c.StringSlice("fulcrum-arg"), Out: os.Stdout, JSON: c.Bool("json"), Command: commandLine(),
	})
	if rep == nil || len(rep.Results) == 0 {
		return errors.Join(err, errors.New("no run completed"))
	}
	rep.WriteText(os.Stdout)
	if werr := writeMarkdown(c.String("out"), rep, ""); werr != nil {
		return errors.Join(err, werr)
	}
	return err
}

func manyBackendsCommand() *cli.Command {
	return &cli.Command{
		Name:  "many-backends",
		Usage: "register many backends by heartbeat with fulcrum, metrics on and off: heartbeats/s, CPU per heartbeat, RSS per backend, /metrics scrape",
		Description: "Starts a fresh fulcrum per run with an admin token, no admin rate limit, no health checks and no\n" +
			"registry cap, registers COUNT backends with GET /upstream/add over keep-alive connections (nothing\n" +
			"listens at those addresses), renews their heartbeats for the duration, then scrapes /metrics; the\n" +
			"same with metrics off (fulcrum-nometrics), in interleaved rounds.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "count", Value: 50000, Usage: "backends to register"},
			&cli.IntFlag{Name: "clients", Value: 16, Usage: "keep-alive HTTP connections sending heartbeats at once"},
			&cli.DurationFlag{Name: "duration", Value: secs(10), Usage: "how long heartbeats are renewed after registration"},
			&cli.IntFlag{Name: "rounds", Value: 3, Usage: "interleaved rounds of metrics on and off"},
			&cli.StringSliceFlag{Name: "fulcrum-arg", Usage: "extra serve argument for both fulcrums (repeatable)"},
			&cli.StringFlag{Name: "out", Value: filepath.Join("bench", "RESULTS-backends.md"), Usage: "Markdown report `FILE` (empty: none)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object per run"},
		},
		Action: runManyBackends,
	}
}

func runManyBackends(c *cli.Context) error {
	if c.Int("count") <= 0 || c.Int("clients") <= 0 || c.Duration("duration") <= 0 || c.Int("rounds") <= 0 {
		return errors.New("--count, --clients, --duration and --rounds must be positive")
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := bench.RunManyBackends(ctx, bench.ManyConfig{
		Exe: exe, Count: c.Int("count"), Clients: c.Int("clients"), Duration: c.Duration("duration"),
		Rounds: c.Int("rounds"), FulcrumArgs: c.StringSlice("fulcrum-arg"), Out: os.Stdout, JSON: c.Bool("json"),
		Command: commandLine(),
	})
	if rep == nil || len(rep.Results) == 0 {
		return errors.Join(err, errors.New("no run completed"))
	}
	rep.WriteText(os.Stdout)
	if werr := writeMarkdown(c.String("out"), rep, ""); werr != nil {
		return errors.Join(err, werr)
	}
	if len(rep.Errors) > 0 {
		return errors.Join(err, fmt.Errorf("%d runs failed", len(rep.Errors)))
	}
	return err
}

func backendsCommand() *cli.Command {
	return &cli.Command{
		Name:   "backends",
		Hidden: true,
		Usage:  "run bench backends for a parent bench process (JSON lines on stdin/stdout)",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "backends", Value: 4},
			&cli.IntSliceFlag{Name: "backend-ports"},
		},
		Action: func(c *cli.Context) error {
			return bench.ServeBackends(c.Int("backends"), c.IntSlice("backend-ports"), os.Stdin, os.Stdout)
		},
	}
}

func loadConfig(c *cli.Context) (bench.Config, []string, error) {
	cfg := bench.Config{Duration: c.Duration("duration"), Conns: c.Int("conns"), Workers: c.Int("workers"),
		PingConns: c.Int("ping-conns"), ClientLoops: c.Int("client-threads"), Hold: c.Int("hold")}
	if cfg.Duration <= 0 || cfg.Conns <= 0 || cfg.Workers <= 0 || cfg.PingConns <= 0 || cfg.ClientLoops <= 0 ||
		cfg.Hold <= 0 || c.Int("backends") <= 0 {
		return cfg, nil, errors.New("--duration, --conns, --workers, --ping-conns, --client-threads, --hold and --backends must be positive")
	}
	scenarios := c.StringSlice("scenario")
	for _, s := range scenarios {
		if !contains(bench.Scenarios, s) {
			return cfg, nil, fmt.Errorf("--scenario %q: want one of %s", s, strings.Join(bench.Scenarios, ", "))
		}
	}
	if len(scenarios) == 0 {
		scenarios = bench.Scenarios
	}
	return cfg, scenarios, nil
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// progressOut is where the live progress line goes: stdout, only when it is a terminal and
// results are not JSON.
func progressOut(c *cli.Context) io.Writer {
	if c.Bool("json") || !term.IsTerminal(int(os.Stdout.Fd())) {
		return nil
	}
	return os.Stdout
}

func runBench(c *cli.Context) error {
	cfg, scenarios, err := loadConfig(c)
	if err != nil {
		return err
	}
	if c.Bool("direct") && c.String("target") != "" {
		return errors.New("--direct and --target exclude each other")
	}
	bench.RaiseFileLimit()
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	args := []string{"bench", "backends", "--backends", strconv.Itoa(c.Int("backends"))}
	for _, p := range c.IntSlice("backend-ports") {
		args = append(args, "--backend-ports", strconv.Itoa(p))
	}
	bs, err := bench.StartChildBackends(exe, args...)
	if err != nil {
		return err
	}
	defer bs.Close()
	fmt.Fprintln(os.Stderr, "bench backends:", strings.Join(bs.Addrs(), " "))
	r := &bench.Runner{Backends: bs, Config: cfg, Progress: progressOut(c)}
	cleanup, err := benchTarget(c, exe, bs.Addrs(), r)
	if err != nil {
		return err
	}
	defer cleanup()
	return runScenarios(ctx, c, r, scenarios)
}

// benchTarget sets r's target: --direct, --target, or a fulcrum started for the run (and
// started afresh for idle). The returned function stops what it started.
func benchTarget(c *cli.Context, exe string, backends []string, r *bench.Runner) (func(), error) {
	switch {
	case c.Bool("direct"):
		r.Target = bench.Target{Name: bench.Direct, Addr: backends[0], Direct: true}
		return func() {}, nil
	case c.String("target") != "":
		if len(c.IntSlice("backend-ports")) == 0 {
			fmt.Fprintln(os.Stderr, "warning: --target without --backend-ports: the balancer must forward to", strings.Join(backends, " "))
		}
		r.Target = bench.Target{Name: "target", Addr: c.String("target"), PID: c.Int("target-pid")}
		if a := c.String("target-admin"); a != "" {
			r.Target.Counts = bench.FulcrumCounts(a)
		}
		return func() {}, nil
	}
	start := func() (*bench.Process, error) {
		p, t, err := bench.StartFulcrum(exe, backends, c.StringSlice("fulcrum-arg")...)
		if err != nil {
			return nil, err
		}
		t.FDsPerConn = r.Target.FDsPerConn // measured on the first process
		r.Target = t
		fmt.Fprintf(os.Stderr, "fulcrum listening on %s (pid %d)\n", t.Addr, t.PID)
		return p, nil
	}
	p, err := start()
	if err != nil {
		return nil, err
	}
	r.Restart = func() (bench.Target, error) {
		p.Stop()
		if p, err = start(); err != nil {
			return bench.Target{}, err
		}
		return r.Target, nil
	}
	return func() {
		if p != nil {
			p.Stop()
		}
	}, nil
}

func runScenarios(ctx context.Context, c *cli.Context, r *bench.Runner, scenarios []string) error {
	failed := 0
	for _, sc := range scenarios {
		res, err := r.Run(ctx, sc)
		if err != nil {
			failed++
			fmt.Fprintln(os.Stderr, "error:", err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if c.Bool("json") {
			fmt.Println(res.JSON())
		} else {
			fmt.Println(res.Text())
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d scenarios failed", failed, len(scenarios))
	}
	return nil
}

func runCompare(c *cli.Context) error {
	cfg, scenarios, err := loadConfig(c)
	if err != nil {
		return err
	}
	for _, kv := range c.StringSlice("yardstick-env") {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("--yardstick-env %q: want KEY=VALUE, such as EVL_LOOPS=2", kv)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Compare(ctx, bench.CompareConfig{
		Exe: exe, Backends: c.Int("backends"), Scenarios: scenarios, Peers: c.StringSlice("peer"),
		Yardstick: c.String("yardstick"), YardstickEnv: c.StringSlice("yardstick-env"), SockmapYardstick: c.String("sockmap-yardstick"),
		Rounds: c.Int("rounds"), Config: cfg, FulcrumArgs: c.StringSlice("fulcrum-arg"),
		Out: os.Stdout, JSON: c.Bool("json"), Progress: progressOut(c), Command: commandLine(),
	})
	if err != nil && rep == nil {
		return err
	}
	rep.WriteText(os.Stdout)
	if werr := writeReport(c, rep); werr != nil {
		return errors.Join(err, werr)
	}
	return err
}

// commandLine is how this comparison was started, as a user would type it again.
func commandLine() string {
	return "fulcrum " + strings.Join(os.Args[1:], " ")
}

// writeReport writes the Markdown report to --out and its data beside it (.json), from which
// fulcrum-chart draws the chart the Markdown links (--chart): this binary does not link the
// plotting library.
func writeReport(c *cli.Context, rep *bench.Report) error {
	out := c.String("out")
	if out == "" {
		return nil
	}
	base := strings.TrimSuffix(out, filepath.Ext(out))
	chart := cmp.Or(c.String("chart"), base+".png")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := rep.WriteJSON(base + ".json"); err != nil {
		return err
	}
	fmt.Println("wrote", base+".json")
	rel, err := filepath.Rel(filepath.Dir(out), chart)
	if err != nil {
		rel = chart
	}
	if err := writeMarkdown(out, rep, rel); err != nil {
		return err
	}
	fmt.Printf("chart: fulcrum-chart --out %s %s\n", chart, base+".json")
	return nil
}

// writeMarkdown writes rep to out (nothing when out is empty), with chart (relative to out)
// when not empty.
func writeMarkdown(out string, rep *bench.Report, chart string) error {
	if out == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := rep.WriteMarkdown(f, chart); err != nil {
		f.Close()
		return fmt.Errorf("write report %s: %w", out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write report %s: %w", out, err)
	}
	fmt.Println("wrote", out)
	return nil
}

func secs(n int) time.Duration { return time.Duration(n) * time.Second }
