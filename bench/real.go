package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Real-client suites: a real client tool through each balancer to two real servers.
const (
	Wrk     = "wrk"     // wrk, HTTP/1.1 keep-alive, against two nginx HTTP servers
	Redis   = "redis"   // redis-benchmark, pipelined SET and GET, against two redis-servers
	Pgbench = "pgbench" // pgbench select-only against two PostgreSQL clusters
)

// RealSuites lists every real-client suite in the order they run.
var RealSuites = []string{Wrk, Redis, Pgbench}

// RealConfig describes one real-client comparison. Exe must be set; the other fields' zero
// values mean the defaults in brackets.
type RealConfig struct {
	Exe    string   // the fulcrum binary
	Suites []string // [all of RealSuites]; a suite whose tools are missing is skipped
	Peers  []string // balancers [fulcrum, haproxy, and fulcrum-goroutine when Exe has a --data-plane flag]
	Rounds int      // interleaved rounds [3], at least 3
	// Duration is how long wrk and pgbench run [3s]; redis-benchmark runs a count.
	Duration      time.Duration
	HTTPConns     int // wrk's connections [32]
	RedisConns    int // redis-benchmark's connections [32]
	RedisPipeline int // redis-benchmark's pipeline depth [16]
	RedisRequests int // redis-benchmark's requests per test (SET, GET) [1,000,000]
	PgClients     int // pgbench's clients [16]
	Threads       int // wrk's, redis-benchmark's and pgbench's threads [1]
	// FulcrumArgs are appended to fulcrum's serve command line.
	FulcrumArgs []string
	Out         io.Writer // a line per run; nil: io.Discard
	JSON        bool      // runs as JSON lines
	Command     string    // how the comparison was started, for the report
}

func (rc *RealConfig) defaults() {
	if len(rc.Suites) == 0 {
		rc.Suites = RealSuites
	}
	if len(rc.Peers) == 0 {
		rc.Peers = withPlanes(rc.Exe, []string{Fulcrum, HAProxy})
	}
	rc.Rounds = max(rc.Rounds, 3)
	rc.Duration = positiveOr(rc.Duration, 3*time.Second)
	rc.HTTPConns = positiveOr(rc.HTTPConns, 32)
	rc.RedisConns = positiveOr(rc.RedisConns, 32)
	rc.RedisPipeline = positiveOr(rc.RedisPipeline, 16)
	rc.RedisRequests = positiveOr(rc.RedisRequests, 1_000_000)
	rc.PgClients = positiveOr(rc.PgClients, 16)
	rc.Threads = positiveOr(rc.Threads, 1)
	if rc.Out == nil {
		rc.Out = io.Discard
	}
}

// realSuite is one suite's two servers and the balancers in front of them.
type realSuite struct {
	name    string
	servers []*Process
	peers   []*peer
	run     func(ctx context.Context, addr string) (toolRun, error) // the tool against addr
	conns   int                                                     // the tool's connections
}

func (s *realSuite) stop() {
	for _, p := range s.peers {
		p.proc.Stop()
	}
	for _, p := range s.servers {
		p.Stop()
	}
}

// RunReal starts each suite's servers and balancers, runs each suite's tool through each
// balancer in interleaved rounds, stops everything and returns the report. A suite that
// cannot start is skipped with the reason in the report.
func RunReal(ctx context.Context, rc RealConfig) (*Report, error) {
	rc.defaults()
	RaiseFileLimit()
	rep := &Report{Machine: DescribeMachine(), Rounds: rc.Rounds, Command: rc.Command, Started: time.Now(), Load: rc.describe()}
	dir, err := os.MkdirTemp("", "fulcrum-real-")
	if err != nil {
		return nil, fmt.Errorf("bench: temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil { // the servers' own users must enter it
		return nil, fmt.Errorf("bench: temp dir: %w", err)
	}
	var suites []*realSuite
	defer func() {
		for _, s := range suites {
			s.stop()
		}
	}()
	for _, name := range rc.Suites {
		s, skipped, err := rc.startSuite(filepath.Join(dir, name), name)
		for _, msg := range skipped {
			fmt.Fprintln(rc.Out, msg)
			rep.Skipped = append(rep.Skipped, msg)
		}
		if err != nil {
			msg := fmt.Sprintf("skipping %s: %v", name, err)
			fmt.Fprintln(rc.Out, msg)
			rep.Skipped = append(rep.Skipped, msg)
			continue
		}
		suites = append(suites, s)
		rep.Notes = append(rep.Notes, name+": "+peerVersion(suiteTool[name], "--version"))
	}
	if len(suites) == 0 {
		return rep, errors.New("bench: no real-client suite could start")
	}
	rep.Targets = realTargets(rc.Peers, suites)
	rep.Title = "Real clients through " + strings.Join(rep.Targets, ", ") + ", two servers behind each"
	err = rc.rounds(ctx, suites, rep)
	rep.Finished, rep.Machine.LoadAvgEnd = time.Now(), loadAvg()
	return rep, err
}

// realTargets are the peers that run in at least one suite, in the order asked.
func realTargets(peers []string, suites []*realSuite) []string {
	var out []string
	for _, name := range peers {
		for _, s := range suites {
			if slices.ContainsFunc(s.peers, func(p *peer) bool { return p.target.Name == name }) {
				out = append(out, name)
				break
			}
		}
	}
	return out
}

func (rc *RealConfig) describe() string {
	return fmt.Sprintf("wrk %d connections for %s; redis-benchmark %d connections, pipeline %d, %d SET and %d GET; "+
		"pgbench select-only %d clients for %s; client tools on %d thread(s); two servers behind each balancer; %d interleaved rounds",
		rc.HTTPConns, rc.Duration, rc.RedisConns, rc.RedisPipeline, rc.RedisRequests, rc.RedisRequests,
		rc.PgClients, rc.Duration, rc.Threads, rc.Rounds)
}

// rounds runs every suite through every balancer, round after round.
func (rc *RealConfig) rounds(ctx context.Context, suites []*realSuite, rep *Report) error {
	for round := 1; round <= rc.Rounds; round++ {
		for _, s := range suites {
			for _, p := range s.peers {
				if err := ctx.Err(); err != nil {
					return err
				}
				res, err := runRealOnce(ctx, s, p.target)
				res.Round = round
				failure := ""
				if err != nil {
					failure = fmt.Sprintf("round %d: %s through %s: %v", round, s.name, p.target.Name, err)
				}
				rep.record(rc.Out, rc.JSON, res, failure)
			}
		}
	}
	return nil
}

// runRealOnce runs a suite's tool through one balancer and measures the balancer's CPU over
// the tool's whole run.
func runRealOnce(ctx context.Context, s *realSuite, t Target) (Result, error) {
	var servers []int
	for _, p := range s.servers {
		servers = append(servers, p.PID())
	}
	cpu := startCPU(t.PID, servers...)
	tr, err := s.run(ctx, t.Addr)
	use := cpu.stop()
	if err != nil {
		return Result{}, err
	}
	use.Self = tr.cpu // the load generator is the tool, not this process
	perOp := "cpu_us_per_req"
	if s.name == Pgbench {
		perOp = "cpu_us_per_txn"
	}
	use.addTo(tr.metrics, perOp, tr.ops, "")
	return Result{Scenario: s.name, Target: t.Name, Conns: s.conns, Seconds: use.Wall.Seconds(), Metrics: tr.metrics}, nil
}

// suiteTool is the client tool each suite runs.
var suiteTool = map[string]string{Wrk: "wrk", Redis: "redis-benchmark", Pgbench: "pgbench"}
