package bench

import (
	"strings"
	"testing"
)

const wrkOutput = `Running 3s test @ http://127.0.0.1:40001/small.txt
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   412.05us  120.33us   5.21ms   91.20%
    Req/Sec    77.81k     3.02k   81.20k    70.00%
  Latency Distribution
     50%  398.00us
     75%  450.00us
     90%  520.00us
     99%    1.02ms
  232290 requests in 3.00s, 56.27MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  77425.88
Transfer/sec:     18.76MB
`

func TestParseWrk(t *testing.T) {
	tr, err := parseWrk(wrkOutput)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"requests_per_s": 77425.88, "requests": 232290, "p50_us": 398, "p99_us": 1020, "errors": 7}
	for k, v := range want {
		if tr.metrics[k] != v {
			t.Errorf("%s = %v, want %v", k, tr.metrics[k], v)
		}
	}
	if tr.ops != 232290 {
		t.Errorf("ops = %v, want 232290", tr.ops)
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Error("output without a rate parsed")
	}
	if _, err := parseWrk(strings.Replace(wrkOutput, "1.02ms", "1.02xs", 1)); err == nil {
		t.Error("a latency in an unknown unit parsed")
	}
}

func TestParseWrkDuration(t *testing.T) {
	for in, want := range map[string]float64{"345.5us": 345.5, "1.50ms": 1500, "2.00s": 2e6, "1.00m": 60e6} {
		if got, err := parseWrkDuration(in); err != nil || got != want {
			t.Errorf("%s: %v, %v; want %v", in, got, err, want)
		}
	}
}

const redisCSV = `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","400000.00","1.100","0.200","1.000","1.800","2.500","9.000"
"GET","500000.00","0.900","0.100","0.800","1.500","2.000","8.000"
`

func TestParseRedisCSV(t *testing.T) {
	tr, err := parseRedisCSV(redisCSV, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	// 2,000,000 requests over 2.5 s + 2 s.
	want := map[string]float64{"requests_per_s": 2e6 / 4.5, "requests": 2e6, "set_rps": 400000, "get_rps": 500000, "p50_us": 800, "p99_us": 2000}
	for k, v := range want {
		if tr.metrics[k] != v {
			t.Errorf("%s = %v, want %v", k, tr.metrics[k], v)
		}
	}
	for _, bad := range []string{"", `"test","rps"` + "\n", strings.Replace(redisCSV, "500000.00", "x", 1), redisCSV[:strings.Index(redisCSV, "\n")+1]} {
		if _, err := parseRedisCSV(bad, 10); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

const pgbenchOutput = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 1
query mode: simple
number of clients: 16
number of threads: 1
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 61234
number of failed transactions: 0 (0.000%)
latency average = 0.781 ms
initial connection time = 12.345 ms
tps = 20411.333333 (without initial connection time)
`

func TestParsePgbench(t *testing.T) {
	tr, err := parsePgbench(pgbenchOutput)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"tps": 20411.333333, "transactions": 61234, "latency_avg_us": 781, "errors": 0}
	for k, v := range want {
		if tr.metrics[k] != v {
			t.Errorf("%s = %v, want %v", k, tr.metrics[k], v)
		}
	}
	if _, err := parsePgbench("pgbench: error: connection to server failed\n"); err == nil {
		t.Error("a failed run parsed")
	}
}

func TestToolArgs(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{strings.Join(wrkArgs("127.0.0.1:9", 32, 1, 3e9), " "), "-t 1 -c 32 -d 3s --latency http://127.0.0.1:9/small.txt"},
		{strings.Join(redisArgs("127.0.0.1:9", 32, 16, 1000, 2), " "), "-h 127.0.0.1 -p 9 -c 32 -P 16 -n 1000 -t set,get --csv --threads 2"},
		{strings.Join(pgbenchArgs("127.0.0.1:9", 16, 1, 3e9), " "), "-h 127.0.0.1 -p 9 -U postgres -S -n -c 16 -j 1 -T 3 postgres"},
	} {
		if tc.got != tc.want {
			t.Errorf("args %q, want %q", tc.got, tc.want)
		}
	}
}
