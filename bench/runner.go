package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Target is what the load is pointed at.
type Target struct {
	// Name labels results: "direct", "fulcrum", "haproxy", "nginx", or anything.
	Name string
	// Addr is where clients connect ("127.0.0.1:port").
	Addr string
	// Direct means Addr is one of the backends itself, with no balancer: balance is skipped
	// and idle reports no balancer memory.
	Direct bool
	// PID is the balancer's process, whose memory (with its children's) idle measures, whose
	// CPU (with its children's) the timed loads measure, and whose open-file limit bounds how
	// many connections idle and balance hold; zero means unknown: no memory or CPU figure,
	// and this process's limit is assumed.
	PID int
	// FDsPerConn is how many descriptors one held connection costs the process at PID (or this
	// process when PID is zero); zero means 2 (client side and backend side).
	FDsPerConn int
	// Counts reads the balancer's own count of open connections per backend address; nil
	// means the balancer does not say, and balance reports only what the backends saw.
	Counts func() (map[string]int64, error)
	// Settle is how long idle waits, once every connection is held, before it measures: the
	// sockmap plane moves a connection into the kernel only after --sockmap-after. Zero means
	// measure at once.
	Settle time.Duration
	// Admin is fulcrum's admin address; empty for other peers.
	Admin string
	// Setup says how the peer was run when its name alone does not (the yardstick's binary
	// and environment, a fulcrum variant's extra flags); empty means nothing to add.
	Setup string
}

// Config sizes the scenarios. Zero values mean the defaults in brackets.
type Config struct {
	Duration    time.Duration // how long each timed load runs [3s]
	Conns       int           // throughput's connections [8]
	Workers     int           // connrate's clients, each one connection at a time [16]
	PingConns   int           // latency's persistent connections [32]; latency1 has one
	ClientLoops int           // OS threads of the connrate and latency client [1]
	Hold        int           // connections idle and balance hold [10000], clamped to the fd limits
}

func (c Config) duration() time.Duration { return positiveOr(c.Duration, 3*time.Second) }
func (c Config) conns() int              { return positiveOr(c.Conns, 8) }
func (c Config) workers() int            { return positiveOr(c.Workers, 16) }
func (c Config) pingConns() int          { return positiveOr(c.PingConns, 32) }
func (c Config) clientLoops() int        { return positiveOr(c.ClientLoops, 1) }
func (c Config) hold() int               { return positiveOr(c.Hold, 10000) }

// positiveOr is v, or def when v is zero or negative (not set).
func positiveOr[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// Runner runs scenarios against one target with one set of backends. Backends and Target
// must be set; the other fields' zero values are documented.
type Runner struct {
	Backends Backends
	Target   Target
	Config   Config
	// Round labels results in a comparison; zero outside one.
	Round int
	// Progress receives a live progress line (rewritten with \r); nil means none.
	Progress io.Writer
	// Restart, when set, replaces the balancer with a freshly started one and returns it as
	// the new Target. Idle calls it first, so that memory the balancer kept from earlier loads
	// (allocator pools, Go's heap) does not hide what held connections cost. Nil means idle
	// measures the balancer as it is.
	Restart func() (Target, error)

	ops atomic.Int64 // operations done in the running scenario, for the progress line
}

// Run runs one scenario and returns what it measured. It returns an error when the
// scenario could not run at all; failures of single operations are counted in the result.
func (r *Runner) Run(ctx context.Context, scenario string) (Result, error) {
	var res Result
	var err error
	switch scenario {
	case Throughput:
		res, err = r.throughput(ctx)
	case Connrate:
		res, err = r.connrate(ctx)
	case Latency:
		res, err = r.latency(ctx)
	case Latency1:
		res, err = r.latency1(ctx)
	case Idle:
		res, err = r.idle(ctx)
	case Balance:
		res, err = r.balance(ctx)
	default:
		return Result{}, fmt.Errorf("bench: unknown scenario %q", scenario)
	}
	if err != nil {
		return Result{}, fmt.Errorf("bench: %s against %s: %w", scenario, r.Target.Name, err)
	}
	res.Scenario, res.Target, res.Round = scenario, r.Target.Name, r.Round
	return res, nil
}

// grace is how long past its planned end any socket operation may still take before the
// scenario gives up on it: every load ends by itself.
const grace = 15 * time.Second

// progress shows label and the operation count every quarter second until the returned
// function is called; it clears the line at the end.
func (r *Runner) progress(label string, total time.Duration) func() {
	r.ops.Store(0)
	if r.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // progressLine: ends when the scenario's stop function runs
		defer wg.Done()
		start := time.Now()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(r.Progress, "\r\033[K")
				return
			case <-t.C:
				el := time.Since(start)
				fmt.Fprintf(r.Progress, "\r\033[K%s %s: %d ops, %.1fs/%.0fs", label, r.Target.Name,
					r.ops.Load(), el.Seconds(), total.Seconds())
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// waitQuiet waits until the backends have no open connection left from earlier loads, so
// that counts start from zero.
func (r *Runner) waitQuiet(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := r.Backends.Stats()
		if err != nil {
			return err
		}
		var active int64
		for _, s := range st {
			active += s.Active
		}
		if active == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("backends still hold %d connections from an earlier load", active)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// headroom is the descriptors left for everything but held connections (listeners, pipes,
// logs, admin requests).
const headroom = 400

// holdLimit is how many connections idle and balance may hold, and why fewer than asked
// when it clamps: the balancer's and this process's open-file limits must both fit.
func (r *Runner) holdLimit(ctx context.Context) (int, string, error) {
	want := r.Config.hold()
	fds, err := r.fdsPerConn(ctx, want)
	if err != nil {
		return 0, "", err
	}
	who, pid := "the balancer ("+r.Target.Name+")", r.Target.PID
	if pid == 0 || r.Target.Direct {
		who, pid = "this process", os.Getpid()
	}
	limit, err := fileLimit(pid)
	if err != nil {
		limit = int(ownFileLimit())
	}
	n, why := want, ""
	if m := (limit - headroom) / fds; m < n {
		n = m
		why = fmt.Sprintf("holding %d connections, not %d: %s uses %d descriptors per connection and its open-file limit is %d (%d kept for everything else)",
			n, want, who, fds, limit, headroom)
	}
	clients := 1
	if _, ok := r.Backends.(*Servers); ok {
		clients = 2 // the backends' side of each connection is in this process too
	}
	if m := (int(ownFileLimit()) - headroom) / clients; m < n {
		n = m
		why = fmt.Sprintf("holding %d connections, not %d: the bench process needs %d descriptors per connection and its open-file limit is %d",
			n, want, clients, ownFileLimit())
	}
	return max(n, 1), why, nil
}

// probeConns is how many connections fdsPerConn opens to see what one costs the balancer;
// enough that a few pooled descriptors (Go's splice pipes) do not hide the true cost.
const probeConns = 512

// fdsPerConn is how many descriptors one held connection costs the balancer: Target's
// figure when it gives one, else measured by holding probeConns connections and counting
// the balancer's open descriptors before and after.
func (r *Runner) fdsPerConn(ctx context.Context, want int) (int, error) {
	switch {
	case r.Target.FDsPerConn > 0:
		return r.Target.FDsPerConn, nil
	case r.Target.Direct:
		return 1, nil
	case r.Target.PID == 0:
		return 2, nil
	}
	if err := r.waitQuiet(ctx); err != nil {
		return 0, err
	}
	before, err := treeFDs(r.Target.PID)
	if err != nil {
		return 0, err
	}
	h := r.openHeld(ctx, min(probeConns, want))
	after, err := treeFDs(r.Target.PID)
	opened := len(h.conns)
	h.closeAll()
	if err != nil {
		return 0, err
	}
	if opened == 0 {
		return 0, fmt.Errorf("probe: no connection opened (first error: %v)", h.firstErr)
	}
	// Remember the figure: a second probe would see descriptors pooled by the first (Go
	// keeps splice pipes for reuse) and undercount.
	r.Target.FDsPerConn = max((after-before+opened-1)/opened, 2)
	return r.Target.FDsPerConn, r.waitQuiet(ctx)
}

func ownFileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 1024
	}
	return rl.Cur
}
