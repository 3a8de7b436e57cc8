package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// startSuite starts a suite's two servers in dir and every peer that can start in front of
// them; it returns why peers were skipped, and an error when the suite cannot run.
func (rc *RealConfig) startSuite(dir, name string) (*realSuite, []string, error) {
	start, ok := map[string]func(string) (*Process, string, error){
		Wrk: startHTTPServer, Redis: startRedis, Pgbench: startPostgres}[name]
	if !ok {
		return nil, nil, fmt.Errorf("unknown suite %q (want one of %v)", name, RealSuites)
	}
	tool, err := lookPeer(suiteTool[name])
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("bench: suite dir: %w", err)
	}
	conns := map[string]int{Wrk: rc.HTTPConns, Redis: rc.RedisConns, Pgbench: rc.PgClients}[name]
	s := &realSuite{name: name, run: rc.toolFunc(name, tool), conns: conns}
	var addrs []string
	for i := range 2 {
		p, addr, err := start(filepath.Join(dir, "server"+strconv.Itoa(i+1)))
		if err != nil {
			s.stop()
			return nil, nil, err
		}
		s.servers, addrs = append(s.servers, p), append(addrs, addr)
	}
	if name == Pgbench {
		if err := initPgbench(tool, addrs); err != nil {
			s.stop()
			return nil, nil, err
		}
	}
	skipped := rc.startSuitePeers(s, dir, addrs)
	if len(s.peers) == 0 {
		s.stop()
		return nil, skipped, fmt.Errorf("no balancer started in front of %s", name)
	}
	return s, skipped, nil
}

// startSuitePeers starts the balancers in front of the suite's servers; direct has no place
// here (there are two servers) and is skipped.
func (rc *RealConfig) startSuitePeers(s *realSuite, dir string, addrs []string) []string {
	var skipped []string
	none := ruler{err: errors.New("the real clients run no yardstick")}
	for _, name := range rc.Peers {
		start := launcher{exe: rc.Exe, dir: dir, backends: addrs, fulcrumArgs: rc.FulcrumArgs,
			yardstick: none, sockmapYardstick: none}.start(name)
		if start == nil {
			skipped = append(skipped, fmt.Sprintf("skipping %s in %s: the real clients need a balancer", name, s.name))
			continue
		}
		p, t, err := start()
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("skipping %s in %s: %v", name, s.name, err))
			continue
		}
		fmt.Fprintf(rc.Out, "%s: %s listening on %s (pid %d) in front of %v\n", s.name, name, t.Addr, t.PID, addrs)
		s.peers = append(s.peers, &peer{target: t, proc: p, start: start})
	}
	return skipped
}

// initPgbench creates pgbench's tables (scale 1) on each server, straight, not through a balancer.
func initPgbench(pgbench string, addrs []string) error {
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		if _, _, err := runTool(context.Background(), 2*time.Minute, pgbench, "-i", "-s", "1", "-q",
			"-h", host, "-p", port, "-U", "postgres", "postgres"); err != nil {
			return fmt.Errorf("bench: pgbench -i on %s: %w", a, err)
		}
	}
	return nil
}

// toolFunc runs a suite's tool against a balancer's address and reads its report.
func (rc *RealConfig) toolFunc(name, exe string) func(ctx context.Context, addr string) (toolRun, error) {
	timeout := rc.Duration + 5*time.Minute // redis-benchmark runs a count, not a time
	var args func(addr string) []string
	var parse func(out string) (toolRun, error)
	switch name {
	case Wrk:
		args = func(addr string) []string { return wrkArgs(addr, rc.HTTPConns, rc.Threads, rc.Duration) }
		parse = parseWrk
	case Redis:
		args = func(addr string) []string {
			return redisArgs(addr, rc.RedisConns, rc.RedisPipeline, rc.RedisRequests, rc.Threads)
		}
		parse = func(out string) (toolRun, error) { return parseRedisCSV(out, rc.RedisRequests) }
	default:
		args = func(addr string) []string { return pgbenchArgs(addr, rc.PgClients, rc.Threads, rc.Duration) }
		parse = parsePgbench
	}
	return func(ctx context.Context, addr string) (toolRun, error) {
		out, cpu, err := runTool(ctx, timeout, exe, args(addr)...)
		if err != nil {
			return toolRun{}, err
		}
		tr, err := parse(out)
		tr.cpu = cpu
		return tr, err
	}
}
