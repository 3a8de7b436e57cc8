package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// toolRun is what one run of a real client tool reported.
type toolRun struct {
	metrics map[string]float64
	ops     float64       // requests or transactions: the divisor of the CPU per operation
	cpu     time.Duration // the tool's own user and system time
}

// runTool runs exe args, bounded by timeout, and returns its standard output and CPU time.
func runTool(ctx context.Context, timeout time.Duration, exe string, args ...string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var cpu time.Duration
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		return out.String(), cpu, fmt.Errorf("%s: %w: %s", exe, err, lastLines(errOut.String()+out.String(), 5))
	}
	return out.String(), cpu, nil
}

// wrkArgs: HTTP/1.1 keep-alive GETs of the small file over conns connections for d.
func wrkArgs(addr string, conns, threads int, d time.Duration) []string {
	return []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", fmt.Sprintf("%.0fs", d.Seconds()),
		"--latency", "http://" + addr + "/" + smallFile}
}

// parseWrk reads wrk's report: Requests/sec, the request count, the 50% and 99% latencies,
// and socket errors and non-2xx answers, both counted as errors.
func parseWrk(out string) (toolRun, error) {
	tr := toolRun{metrics: map[string]float64{"errors": 0}}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			tr.metrics["requests_per_s"], _ = strconv.ParseFloat(f[1], 64)
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			tr.ops, _ = strconv.ParseFloat(f[0], 64)
		case len(f) == 2 && (f[0] == "50%" || f[0] == "99%"):
			us, err := parseWrkDuration(f[1])
			if err != nil {
				return tr, err
			}
			tr.metrics["p"+strings.TrimSuffix(f[0], "%")+"_us"] = us
		case len(f) > 2 && f[0] == "Socket" && f[1] == "errors:":
			tr.metrics["errors"] += sumWrkErrors(f[2:])
		case len(f) == 5 && f[0] == "Non-2xx":
			n, _ := strconv.ParseFloat(f[4], 64)
			tr.metrics["errors"] += n
		}
	}
	if tr.metrics["requests_per_s"] == 0 || tr.ops == 0 {
		return tr, fmt.Errorf("wrk: no request rate in its output: %s", lastLines(out, 5))
	}
	tr.metrics["requests"] = tr.ops
	return tr, nil
}

// sumWrkErrors adds up "connect 0, read 1, write 0, timeout 2".
func sumWrkErrors(f []string) float64 {
	var n float64
	for _, s := range f {
		if v, err := strconv.ParseFloat(strings.TrimSuffix(s, ","), 64); err == nil {
			n += v
		}
	}
	return n
}

// parseWrkDuration reads wrk's "345.67us", "1.23ms" or "2.00s" as microseconds.
func parseWrkDuration(s string) (float64, error) {
	for _, u := range []struct {
		suffix string
		us     float64
	}{{"us", 1}, {"ms", 1e3}, {"m", 60e6}, {"s", 1e6}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("wrk: latency %q: %w", s, err)
			}
			return f * u.us, nil
		}
	}
	return 0, fmt.Errorf("wrk: latency %q: unknown unit", s)
}

// redisArgs: SET then GET, n requests each, over conns connections, pipeline requests deep.
func redisArgs(addr string, conns, pipeline, n, threads int) []string {
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"-h", host, "-p", port, "-c", strconv.Itoa(conns), "-P", strconv.Itoa(pipeline),
		"-n", strconv.Itoa(n), "-t", "set,get", "--csv"}
	if threads > 1 {
		args = append(args, "--threads", strconv.Itoa(threads))
	}
	return args
}

// parseRedisCSV reads redis-benchmark --csv: one row per test with its rate and latencies.
// The run's rate is all requests over the time the tests took together; the percentiles
// are GET's.
func parseRedisCSV(out string, perTest int) (toolRun, error) {
	r := csv.NewReader(strings.NewReader(out))
	r.FieldsPerRecord = -1
	head, err := r.Read()
	if err != nil {
		return toolRun{}, fmt.Errorf("redis-benchmark: csv head: %w", err)
	}
	col := func(name string) int { return indexOf(head, name) }
	test, rps, p50, p99 := col("test"), col("rps"), col("p50_latency_ms"), col("p99_latency_ms")
	if test < 0 || rps < 0 || p50 < 0 || p99 < 0 {
		return toolRun{}, fmt.Errorf("redis-benchmark: csv head %q lacks test, rps or latencies", head)
	}
	tr := toolRun{metrics: map[string]float64{}}
	var secs float64
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil || len(rec) <= max(test, rps, p50, p99) {
			return toolRun{}, fmt.Errorf("redis-benchmark: csv row %q: %v", rec, err)
		}
		rate, err := strconv.ParseFloat(rec[rps], 64)
		if err != nil || rate <= 0 {
			return toolRun{}, fmt.Errorf("redis-benchmark: rate %q: %v", rec[rps], err)
		}
		name := strings.ToLower(rec[test])
		tr.metrics[name+"_rps"] = rate
		secs += float64(perTest) / rate
		tr.ops += float64(perTest)
		if name == "get" {
			tr.metrics["p50_us"] = msToUS(rec[p50])
			tr.metrics["p99_us"] = msToUS(rec[p99])
		}
	}
	if tr.ops == 0 {
		return toolRun{}, fmt.Errorf("redis-benchmark: no test in its output: %s", lastLines(out, 5))
	}
	tr.metrics["requests_per_s"] = tr.ops / secs
	tr.metrics["requests"] = tr.ops
	return tr, nil
}

func msToUS(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	return v * 1000
}

// pgbenchArgs: the built-in select-only script over clients connections for d, without the
// vacuum pgbench would run first (the tables are read only).
func pgbenchArgs(addr string, clients, threads int, d time.Duration) []string {
	host, port, _ := net.SplitHostPort(addr)
	return []string{"-h", host, "-p", port, "-U", "postgres", "-S", "-n", "-c", strconv.Itoa(clients),
		"-j", strconv.Itoa(threads), "-T", strconv.Itoa(max(int(d.Seconds()), 1)), "postgres"}
}

// parsePgbench reads pgbench's summary: transactions processed, average latency and tps.
func parsePgbench(out string) (toolRun, error) {
	tr := toolRun{metrics: map[string]float64{}}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "number of transactions actually processed: "); ok {
			n, _, _ := strings.Cut(v, "/")
			tr.ops, _ = strconv.ParseFloat(strings.TrimSpace(n), 64)
		}
		if v, ok := strings.CutPrefix(line, "latency average = "); ok {
			tr.metrics["latency_avg_us"] = msToUS(strings.TrimSuffix(v, " ms"))
		}
		if v, ok := strings.CutPrefix(line, "number of failed transactions: "); ok {
			n, _, _ := strings.Cut(v, " ")
			tr.metrics["errors"], _ = strconv.ParseFloat(n, 64)
		}
		if v, ok := strings.CutPrefix(line, "tps = "); ok {
			n, _, _ := strings.Cut(v, " ")
			tr.metrics["tps"], _ = strconv.ParseFloat(n, 64)
		}
	}
	if tr.ops == 0 || tr.metrics["tps"] == 0 {
		return tr, fmt.Errorf("pgbench: no transactions in its output: %s", lastLines(out, 12))
	}
	tr.metrics["transactions"] = tr.ops
	return tr, nil
}
