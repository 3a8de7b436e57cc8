package bench

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// dialers is how many connections idle and balance open at once.
const dialers = 64

// held are connections opened by openHeld; close them with closeAll.
type held struct {
	conns    []*net.TCPConn
	secs     float64 // from the first dial to the last reply
	errs     int
	firstErr error
}

// openHeld opens n connections in ModeHold and waits for each backend's one-byte reply, so
// every connection has reached a backend when it returns.
func (r *Runner) openHeld(ctx context.Context, n int) held {
	stop := r.progress("opening", 0)
	defer stop()
	var (
		next atomic.Int64
		mu   sync.Mutex
		h    held
		wg   sync.WaitGroup
	)
	h.conns = make([]*net.TCPConn, 0, n)
	start := time.Now()
	for range min(dialers, n) {
		wg.Add(1)
		go func() { // holdDialer: ends when n dials were made
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				c, err := r.holdOne(ctx)
				mu.Lock()
				if err != nil {
					h.errs++
					if h.firstErr == nil {
						h.firstErr = err
					}
				} else {
					h.conns = append(h.conns, c)
				}
				mu.Unlock()
				r.ops.Add(1)
			}
		}()
	}
	wg.Wait()
	h.secs = time.Since(start).Seconds()
	return h
}

func (r *Runner) holdOne(ctx context.Context) (*net.TCPConn, error) {
	c, err := dial(ctx, r.Target.Addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(grace))
	var ack [1]byte
	if _, err := c.Write([]byte{ModeHold}); err != nil {
		c.Close()
		return nil, fmt.Errorf("hold: %w", err)
	}
	if _, err := c.Read(ack[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("hold: no reply: %w", err)
	}
	c.SetDeadline(time.Time{}) // held until closeAll
	return c, nil
}

func (h *held) closeAll() {
	for _, c := range h.conns {
		c.Close()
	}
	h.conns = nil
}

// notes says how many connections failed to open.
func (h *held) notes(want int) []string {
	if h.errs == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%d of %d connections failed to open; first: %v", h.errs, want, h.firstErr)}
}

// idle opens Hold connections, holds them, and reports the time to open them, the growth
// of the balancer's resident memory per connection, and the growth of the machine's kernel
// slab per connection (for direct too: the baseline of the client's and backends' sockets).
func (r *Runner) idle(ctx context.Context) (Result, error) {
	if err := r.waitQuiet(ctx); err != nil {
		return Result{}, err
	}
	n, why, err := r.holdLimit(ctx) // may probe: before the restart, so that it leaves no trace
	if err != nil {
		return Result{}, err
	}
	if r.Restart != nil && !r.Target.Direct {
		if r.Target, err = r.Restart(); err != nil {
			return Result{}, fmt.Errorf("restart: %w", err)
		}
	}
	res := Result{Conns: n, Metrics: map[string]float64{}}
	if why != "" {
		res.Notes = append(res.Notes, why)
	}
	var before usage
	if !r.Target.Direct && r.Target.PID != 0 {
		if before, err = measure(r.Target.PID); err != nil {
			return Result{}, err
		}
	}
	slabBefore, slabErr := machineSlab()
	h := r.openHeld(ctx, n)
	defer h.closeAll()
	if len(h.conns) == 0 {
		return Result{}, fmt.Errorf("no connection opened (first error: %v)", h.firstErr)
	}
	if err := settle(ctx, r.Target.Settle); err != nil {
		return Result{}, err
	}
	slabAfter, err := machineSlab()
	if slabErr == nil && err == nil {
		addSlabPerConn(res.Metrics, slabBefore, slabAfter, len(h.conns))
	}
	res.Seconds = h.secs
	res.Notes = append(res.Notes, h.notes(n)...)
	res.Metrics["held"] = float64(len(h.conns))
	res.Metrics["open_s"] = h.secs
	if before.rss == 0 {
		if !r.Target.Direct {
			res.Notes = append(res.Notes, "no balancer process known: no memory figure")
		}
		return res, nil
	}
	after, err := measure(r.Target.PID)
	if err != nil {
		return Result{}, err
	}
	held := float64(len(h.conns))
	res.Metrics["fds_per_conn"] = float64(after.fds-before.fds) / held
	res.Metrics["rss_before_mib"] = float64(before.rss) / (1 << 20)
	res.Metrics["rss_after_mib"] = float64(after.rss) / (1 << 20)
	res.Metrics["rss_per_conn_kib"] = float64(after.rss-before.rss) / held / 1024
	return res, nil
}

// settle waits d (a measurement's pause, not a synchronisation), or until ctx ends.
func settle(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// usage is what a balancer process (with its children) holds.
type usage struct {
	rss int64 // bytes resident
	fds int   // open descriptors
}

func measure(pid int) (usage, error) {
	rss, err := treeRSS(pid)
	if err != nil {
		return usage{}, err
	}
	fds, err := treeFDs(pid)
	return usage{rss: rss, fds: fds}, err
}

// balance holds Hold connections and compares how they landed on the backends with what the
// balancer itself counts.
func (r *Runner) balance(ctx context.Context) (Result, error) {
	if r.Target.Direct {
		return Result{Metrics: map[string]float64{}, Notes: []string{"skipped: no balancer in front of the backends"}}, nil
	}
	if err := r.waitQuiet(ctx); err != nil {
		return Result{}, err
	}
	n, why, err := r.holdLimit(ctx)
	if err != nil {
		return Result{}, err
	}
	res := Result{Conns: n, Metrics: map[string]float64{}}
	if why != "" {
		res.Notes = append(res.Notes, why)
	}
	h := r.openHeld(ctx, n)
	defer h.closeAll()
	res.Seconds = h.secs
	res.Notes = append(res.Notes, h.notes(n)...)
	st, err := r.Backends.Stats()
	if err != nil {
		return Result{}, err
	}
	seen := make(map[string]int64, len(st))
	lo, hi, sum := st[0].Active, st[0].Active, int64(0)
	for _, s := range st {
		seen[s.Addr] = s.Active
		lo, hi, sum = min(lo, s.Active), max(hi, s.Active), sum+s.Active
	}
	res.Metrics["held"] = float64(len(h.conns))
	res.Metrics["backend_min"], res.Metrics["backend_max"] = float64(lo), float64(hi)
	res.Metrics["spread"] = float64(hi - lo)
	if sum != int64(len(h.conns)) {
		res.Notes = append(res.Notes, fmt.Sprintf("backends see %d connections, the bench holds %d", sum, len(h.conns)))
	}
	res.Notes = append(res.Notes, fmt.Sprintf("backends saw %v", activeList(st)))
	return r.compareCounts(res, seen)
}

func activeList(st []BackendStats) []int64 {
	out := make([]int64, len(st))
	for i, s := range st {
		out[i] = s.Active
	}
	return out
}

// compareCounts adds whether the balancer's own per-backend counts equal what the backends see.
func (r *Runner) compareCounts(res Result, seen map[string]int64) (Result, error) {
	if r.Target.Counts == nil {
		res.Notes = append(res.Notes, "the balancer reports no per-backend connection counts")
		return res, nil
	}
	counts, err := r.Target.Counts()
	if err != nil {
		return Result{}, fmt.Errorf("balancer counts: %w", err)
	}
	agree := 1.0
	for addr, n := range seen {
		if counts[addr] != n {
			agree = 0
			res.Notes = append(res.Notes, fmt.Sprintf("%s: backend sees %d, balancer counts %d", addr, n, counts[addr]))
		}
	}
	res.Metrics["balancer_agrees"] = agree
	return res, nil
}
