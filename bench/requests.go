package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// msgSize is the size of a request and of its reply in connrate and latency.
const msgSize = 64

// worker is one client goroutine's outcome.
type worker struct {
	samples  []time.Duration
	errs     int
	firstErr error
}

// runWorkers runs fn on Conns goroutines until the duration ends and gathers their samples.
func (r *Runner) runWorkers(ctx context.Context, label string, fn func(ctx context.Context, end time.Time, w *worker)) load {
	n := r.Config.conns()
	stop := r.progress(label, r.Config.duration())
	defer stop()
	start := time.Now()
	end := start.Add(r.Config.duration())
	ws := make([]worker, n)
	var wg sync.WaitGroup
	for i := range ws {
		wg.Add(1)
		go func(w *worker) { // requestWorker: ends at end
			defer wg.Done()
			fn(ctx, end, w)
		}(&ws[i])
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	l := load{secs: secs, conns: n}
	for i := range ws {
		l.samples = append(l.samples, ws[i].samples...)
		l.errs += ws[i].errs
		if l.firstErr == nil {
			l.firstErr = ws[i].firstErr
		}
	}
	return l
}

// load is what all workers of one run did together.
type load struct {
	samples  []time.Duration
	errs     int
	firstErr error
	secs     float64
	conns    int
}

func (w *worker) fail(err error) {
	w.errs++
	if w.firstErr == nil {
		w.firstErr = err
	}
}

// connrate: each worker loops connect → 64-byte request → 64-byte reply → close.
func (r *Runner) connrate(ctx context.Context) (Result, error) {
	l := r.runWorkers(ctx, "connrate", func(ctx context.Context, end time.Time, w *worker) {
		req, reply := request(), make([]byte, msgSize)
		for time.Now().Before(end) && ctx.Err() == nil {
			t0 := time.Now()
			if err := r.transaction(ctx, req, reply); err != nil {
				w.fail(err)
				continue
			}
			w.samples = append(w.samples, time.Since(t0))
			r.ops.Add(1)
		}
	})
	return l.result("conns_per_s", "transactions")
}

func (r *Runner) transaction(ctx context.Context, req, reply []byte) error {
	c, err := dial(ctx, r.Target.Addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(grace))
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	if _, err := io.ReadFull(c, reply); err != nil {
		return fmt.Errorf("reply: %w", err)
	}
	return nil
}

// latency: each worker keeps one connection and ping-pongs 64-byte messages on it.
func (r *Runner) latency(ctx context.Context) (Result, error) {
	l := r.runWorkers(ctx, "latency", func(ctx context.Context, end time.Time, w *worker) {
		c, err := dial(ctx, r.Target.Addr)
		if err != nil {
			w.fail(err)
			return
		}
		defer c.Close()
		c.SetDeadline(end.Add(grace))
		r.pingPong(ctx, c, end, w)
	})
	return l.result("requests_per_s", "requests")
}

func (r *Runner) pingPong(ctx context.Context, c net.Conn, end time.Time, w *worker) {
	req, reply := request(), make([]byte, msgSize)
	for time.Now().Before(end) && ctx.Err() == nil {
		t0 := time.Now()
		if _, err := c.Write(req); err != nil {
			w.fail(fmt.Errorf("ping: %w", err))
			return
		}
		if _, err := io.ReadFull(c, reply); err != nil {
			w.fail(fmt.Errorf("pong: %w", err))
			return
		}
		w.samples = append(w.samples, time.Since(t0))
		r.ops.Add(1)
	}
}

// request is a 64-byte message that starts with ModeEcho, so a backend echoes it whole.
func request() []byte {
	b := make([]byte, msgSize)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	b[0] = ModeEcho
	return b
}

// result turns the samples into a rate, percentiles and counts.
func (l load) result(rateName, countName string) (Result, error) {
	if len(l.samples) == 0 {
		return Result{}, fmt.Errorf("no request completed (%d errors, first: %v)", l.errs, l.firstErr)
	}
	n := len(l.samples)
	p := percentiles(l.samples, 50, 99, 99.9)
	res := Result{Conns: l.conns, Seconds: l.secs, Metrics: map[string]float64{
		rateName: float64(n) / l.secs, "p50_us": p[0], "p99_us": p[1], "p999_us": p[2],
		countName: float64(n), "errors": float64(l.errs),
	}}
	if l.errs > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d operations failed; first: %v", l.errs, l.firstErr))
	}
	return res, nil
}
