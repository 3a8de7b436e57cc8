package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// ManyBackends is the many-backends load: fulcrum with COUNT backends registered by heartbeat,
// with metrics on and off, reporting heartbeats/s, CPU per heartbeat, RSS per backend and
// what one /metrics scrape costs. Its targets are fulcrum and fulcrum-nometrics.
const ManyBackends = "many-backends"

// ManyConfig describes a many-backends run. Exe must be set; the other fields' zero values
// are documented.
type ManyConfig struct {
	// Exe is the fulcrum binary.
	Exe string
	// Count is how many backends to register; zero means 50,000.
	Count int
	// Clients is how many keep-alive HTTP connections send heartbeats at once; zero means 16.
	Clients int
	// Duration is how long heartbeats are renewed after registration; zero means 10s.
	Duration time.Duration
	// Rounds of fulcrum then fulcrum-nometrics, each on a fresh process; zero means 3.
	Rounds int
	// FulcrumArgs are appended to both fulcrums' serve command line, after the load's own
	// settings (manyArgs), so that they may change them.
	FulcrumArgs []string
	// Out receives one line per run; nil means io.Discard.
	Out io.Writer
	// JSON prints runs as JSON lines instead of text.
	JSON bool
	// Command is how the run was started, for the report; empty means not shown.
	Command string
}

func (mc *ManyConfig) defaults() {
	mc.Count = positiveOr(mc.Count, 50000)
	mc.Clients = positiveOr(mc.Clients, 16)
	mc.Duration = positiveOr(mc.Duration, 10*time.Second)
	mc.Rounds = positiveOr(mc.Rounds, 3)
	if mc.Out == nil {
		mc.Out = io.Discard
	}
}

// manyArgs are the serve arguments of the many-backends fulcrum: a token so that any host
// may be named, no rate limit, no health checks (nothing listens at the registered
// addresses), no registry cap, and a TTL and sweep that leave every backend registered for
// the whole run.
func manyArgs(token string) []string {
	return []string{"--admin-token", token, "--admin-rate", "off", "--health-interval", "0",
		"--max-backends", "0", "--ttl", "1h", "--sweep-interval", "1h"}
}

// RunManyBackends runs fulcrum and fulcrum --metrics=false in interleaved rounds, each on a
// fresh process: register Count backends, renew their heartbeats for Duration, scrape
// /metrics. It returns the report (with what completed when an error ends it early).
func RunManyBackends(ctx context.Context, mc ManyConfig) (*Report, error) {
	mc.defaults()
	RaiseFileLimit()
	rep := &Report{Machine: DescribeMachine(), Rounds: mc.Rounds, Command: mc.Command, Started: time.Now(),
		Title:   "fulcrum with " + strconv.Itoa(mc.Count) + " backends registered by heartbeat, metrics on and off",
		Targets: []string{Fulcrum, FulcrumNometrics},
		Load: fmt.Sprintf("%d backends registered by heartbeat (GET /upstream/add) over %d keep-alive connections, then renewed for %s; "+
			"one fresh fulcrum per run, serve %v; %d interleaved rounds",
			mc.Count, mc.Clients, mc.Duration, manyArgs("TOKEN"), mc.Rounds)}
	rep.Setups = append(rep.Setups, FulcrumNometrics+": fulcrum with `--metrics=false` appended to its serve command")
	for round := 1; round <= mc.Rounds; round++ {
		for _, name := range rep.Targets {
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			res, err := mc.run(ctx, name)
			failure := ""
			if err != nil {
				failure = fmt.Sprintf("round %d: %s: %v", round, name, err)
			}
			res.Scenario, res.Target, res.Round = ManyBackends, name, round
			rep.record(mc.Out, mc.JSON, res, failure)
		}
	}
	rep.Finished, rep.Machine.LoadAvgEnd = time.Now(), loadAvg()
	return rep, nil
}

// run measures one fresh fulcrum (name says whether with metrics).
func (mc *ManyConfig) run(ctx context.Context, name string) (Result, error) {
	token := newToken()
	// --fulcrum-arg comes after the load's own settings so that it may change them; the
	// variant's --metrics=false comes last.
	args := append(manyArgs(token), mc.FulcrumArgs...)
	if name == FulcrumNometrics {
		args = append(args, "--metrics=false")
	}
	p, t, err := StartFulcrum(mc.Exe, nil, args...)
	if err != nil {
		return Result{}, err
	}
	defer p.Stop()
	res := Result{Conns: mc.Clients, Metrics: map[string]float64{"backends": float64(mc.Count)}}
	rssBefore, err := treeRSS(t.PID)
	if err != nil {
		return Result{}, err
	}
	if err := mc.register(ctx, t, token, &res); err != nil {
		return Result{}, err
	}
	rssRegistered, err := treeRSS(t.PID)
	if err != nil {
		return Result{}, err
	}
	if err := mc.renew(ctx, t, token, &res); err != nil {
		return Result{}, err
	}
	rssAfter, err := treeRSS(t.PID)
	if err != nil {
		return Result{}, err
	}
	res.Metrics["rss_before_mib"] = float64(rssBefore) / (1 << 20)
	res.Metrics["rss_registered_mib"] = float64(rssRegistered) / (1 << 20)
	res.Metrics["rss_after_mib"] = float64(rssAfter) / (1 << 20)
	res.Metrics["rss_per_backend_kib"] = float64(rssAfter-rssBefore) / float64(mc.Count) / 1024
	if name == FulcrumNometrics {
		return res, nil
	}
	return res, mc.scrape(ctx, t, &res)
}

// newToken is a fresh admin token for one run.
func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// register adds every backend once: registrations/s and CPU per registration.
func (mc *ManyConfig) register(ctx context.Context, t Target, token string, res *Result) error {
	var next atomic.Int64
	cpu := startCPU(t.PID)
	l := sendHeartbeats(ctx, t.Admin, token, mc.Clients, time.Now().Add(10*time.Minute), func() (int, bool) {
		i := int(next.Add(1)) - 1
		return i, i < mc.Count
	})
	use := cpu.stop()
	if l.done < int64(mc.Count) {
		return fmt.Errorf("registered %d of %d backends (%d failed; first: %v)", l.done, mc.Count, l.errs, l.firstErr)
	}
	res.Metrics["registrations_per_s"] = float64(l.done) / l.secs
	res.Metrics["register_s"] = l.secs
	if use.BalancerOK {
		res.Metrics["cpu_us_per_registration"] = cpuPerOp(use.Balancer, float64(l.done))
	}
	return nil
}

// renew sends heartbeats round the registered backends for Duration: heartbeats/s and the
// CPU per heartbeat of fulcrum, of the load generator and of the machine.
func (mc *ManyConfig) renew(ctx context.Context, t Target, token string, res *Result) error {
	var next atomic.Int64
	end := time.Now().Add(mc.Duration)
	cpu := startCPU(t.PID)
	l := sendHeartbeats(ctx, t.Admin, token, mc.Clients, end.Add(grace), func() (int, bool) {
		return int(next.Add(1)-1) % mc.Count, time.Now().Before(end)
	})
	use := cpu.stop()
	if l.done == 0 {
		return fmt.Errorf("no heartbeat answered (%d failed; first: %v)", l.errs, l.firstErr)
	}
	res.Seconds = l.secs
	res.Metrics["heartbeats"], res.Metrics["errors"] = float64(l.done), float64(l.errs)
	res.Metrics["heartbeats_per_s"] = float64(l.done) / l.secs
	use.addTo(res.Metrics, "cpu_us_per_heartbeat", float64(l.done), "")
	if l.errs > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d heartbeats failed; first: %v", l.errs, l.firstErr))
	}
	return nil
}

// scrape reads /metrics three times, plain and then gzipped as Prometheus asks: the median
// time and the size of each, and fulcrum's RSS after them.
func (mc *ManyConfig) scrape(ctx context.Context, t Target, res *Result) error {
	for _, enc := range []struct{ accept, suffix string }{{"", ""}, {"gzip", "_gzip"}} {
		var secs []float64
		var size int64
		for range 3 {
			s, n, err := scrapeOnce(ctx, t.Admin, enc.accept)
			if err != nil {
				return err
			}
			secs, size = append(secs, s), n
		}
		res.Metrics["scrape"+enc.suffix+"_s"] = median(secs)
		res.Metrics["scrape"+enc.suffix+"_mb"] = float64(size) / 1e6
	}
	rss, err := treeRSS(t.PID)
	if err != nil {
		return err
	}
	res.Metrics["rss_after_scrape_mib"] = float64(rss) / (1 << 20)
	return nil
}

// scrapeOnce times one GET /metrics, from the request to the last byte of the body.
func scrapeOnce(ctx context.Context, admin, acceptEncoding string) (float64, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	if acceptEncoding != "" {
		req.Header.Set("Accept-Encoding", acceptEncoding)
	}
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	secs := time.Since(start).Seconds()
	if err != nil {
		return 0, 0, fmt.Errorf("scrape: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, errors.New("scrape: /metrics answered " + resp.Status)
	}
	return secs, n, nil
}
