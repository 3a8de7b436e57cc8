package bench

import (
	"context"
	"fmt"
	"time"
)

// msgSize is the size of a latency message and of its echo.
const msgSize = 64

// Sizes of a ModeRequest transaction: the request (mode byte included) and the reply.
const (
	requestSize = 80
	replySize   = 64
)

// worker is what one light client loop did.
type worker struct {
	samples  []time.Duration
	errs     int
	firstErr error
}

// load is what all loops of one run did together.
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

// connrate: Workers clients each loop connect → 80-byte request → 64-byte reply → the
// server's FIN → close.
func (r *Runner) connrate(ctx context.Context) (Result, error) {
	return r.lightRun(ctx, Connrate, transact, r.Config.workers(), "conns_per_s", "transactions", "cpu_us_per_conn")
}

// latency: PingConns persistent connections ping-pong 64-byte messages.
func (r *Runner) latency(ctx context.Context) (Result, error) {
	return r.lightRun(ctx, Latency, pingPong, r.Config.pingConns(), "requests_per_s", "requests", "cpu_us_per_req")
}

// latency1: one persistent connection ping-pongs 64-byte messages: the round trip alone.
func (r *Runner) latency1(ctx context.Context) (Result, error) {
	return r.lightRun(ctx, Latency1, pingPong, 1, "requests_per_s", "requests", "cpu_us_per_req")
}

// lightRun runs the light client for Duration and measures the balancer's CPU over the
// same window: from before the first connect to after the last connection closed.
func (r *Runner) lightRun(ctx context.Context, label string, kind clientKind, conns int, rate, count, perOp string) (Result, error) {
	stop := r.progress(label, r.Config.duration())
	cpu := r.startCPU()
	start := time.Now()
	end := start.Add(r.Config.duration())
	l, err := runLight(ctx, lightLoad{kind: kind, addr: r.Target.Addr, conns: conns, loops: r.Config.clientLoops(),
		end: end, giveUp: end.Add(grace), ops: &r.ops})
	use := cpu.stop()
	stop()
	if err != nil {
		return Result{}, err
	}
	res, err := l.result(rate, count)
	if err != nil {
		return Result{}, err
	}
	use.addTo(res.Metrics, perOp, res.Metrics[count], "")
	r.noteNoCPU(&res, "cpu_pct")
	return res, nil
}

// startCPU opens a CPU window over the balancer (none for direct) and the backends.
func (r *Runner) startCPU() cpuWindow {
	pid := r.Target.PID
	if r.Target.Direct {
		pid = 0
	}
	var backends []int
	if p := r.Backends.PID(); p != 0 {
		backends = append(backends, p)
	}
	return startCPU(pid, backends...)
}

// noteNoCPU says why a balancer's result has no CPU figure: key, a CPU metric it would
// carry, is missing.
func (r *Runner) noteNoCPU(res *Result, key string) {
	if _, ok := res.Metrics[key]; !ok && !r.Target.Direct {
		res.Notes = append(res.Notes, "no balancer process known: no CPU figure")
	}
}

// transactRequest is an 80-byte ModeRequest request.
func transactRequest() []byte {
	b := request()
	b = append(b, b[:requestSize-msgSize]...)
	b[0] = ModeRequest
	return b
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
