package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// throughput streams bulk data over Conns connections for Duration, uploading to sinks, then
// for Duration again downloading from sources. Rates count only bytes the other end confirmed.
func (r *Runner) throughput(ctx context.Context) (Result, error) {
	if err := r.waitQuiet(ctx); err != nil {
		return Result{}, err
	}
	before, err := r.Backends.Stats()
	if err != nil {
		return Result{}, err
	}
	cpu := r.startCPU()
	up, upSecs, err := r.bulk(ctx, "upload", uploadConn)
	upCPU := cpu.stop()
	if err != nil {
		return Result{}, err
	}
	cpu = r.startCPU()
	down, downSecs, err := r.bulk(ctx, "download", downloadConn)
	downCPU := cpu.stop()
	if err != nil {
		return Result{}, err
	}
	after, err := r.Backends.Stats()
	if err != nil {
		return Result{}, err
	}
	sunk, sourced := statsDelta(before, after)
	res := Result{Conns: r.Config.conns(), Seconds: upSecs + downSecs, Metrics: map[string]float64{
		"upload_mb_s": float64(up) / upSecs / 1e6, "download_mb_s": float64(down) / downSecs / 1e6,
		"upload_bytes": float64(up), "sink_bytes": float64(sunk),
		"download_bytes": float64(down), "source_bytes": float64(sourced),
	}}
	upCPU.addTo(res.Metrics, "cpu_us_per_mb_up", float64(up)/1e6, "_up")
	downCPU.addTo(res.Metrics, "cpu_us_per_mb_down", float64(down)/1e6, "_down")
	r.noteNoCPU(&res, "cpu_pct_up")
	if up != sunk || down != sourced {
		res.Notes = append(res.Notes, fmt.Sprintf("byte counts differ: sent %d, sinks counted %d; received %d, sources wrote %d", up, sunk, down, sourced))
	}
	return res, nil
}

func statsDelta(before, after []BackendStats) (sunk, sourced int64) {
	for i := range after {
		sunk += after[i].Sunk
		sourced += after[i].Sourced
		if i < len(before) {
			sunk -= before[i].Sunk
			sourced -= before[i].Sourced
		}
	}
	return sunk, sourced
}

// bulkFunc moves data over one connection until end and returns the bytes the far end
// confirmed (sink) or that arrived (source).
type bulkFunc func(c *net.TCPConn, end time.Time, r *Runner) (int64, error)

// bulk runs fn on Conns connections at once and returns the total bytes and the seconds
// from the start until the last connection finished.
func (r *Runner) bulk(ctx context.Context, label string, fn bulkFunc) (int64, float64, error) {
	n := r.Config.conns()
	stop := r.progress(label, r.Config.duration())
	defer stop()
	start := time.Now()
	end := start.Add(r.Config.duration())
	var (
		mu    sync.Mutex
		total int64
		errs  []error
		wg    sync.WaitGroup
	)
	for range n {
		wg.Add(1)
		go func() { // bulkConn: ends at end plus the time to drain
			defer wg.Done()
			b, err := r.bulkConn(ctx, end, fn)
			mu.Lock()
			defer mu.Unlock()
			total += b
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	if len(errs) > 0 {
		return total, secs, fmt.Errorf("%s: %d of %d connections failed: %w", label, len(errs), n, errs[0])
	}
	return total, secs, nil
}

func (r *Runner) bulkConn(ctx context.Context, end time.Time, fn bulkFunc) (int64, error) {
	c, err := dial(ctx, r.Target.Addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(end.Add(grace))
	return fn(c, end, r)
}

func dial(ctx context.Context, addr string) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return c.(*net.TCPConn), nil
}

// uploadConn writes until end, half-closes, and returns the count the sink replies with,
// after checking it against what was written.
func uploadConn(c *net.TCPConn, end time.Time, r *Runner) (int64, error) {
	buf := make([]byte, bulkChunk)
	if _, err := c.Write([]byte{ModeSink}); err != nil {
		return 0, fmt.Errorf("upload: %w", err)
	}
	var sent int64
	for time.Now().Before(end) {
		n, err := c.Write(buf)
		sent += int64(n)
		r.ops.Add(int64(n))
		if err != nil {
			return 0, fmt.Errorf("upload: %w", err)
		}
	}
	if err := c.CloseWrite(); err != nil {
		return 0, fmt.Errorf("upload: close write: %w", err)
	}
	var reply [8]byte
	if _, err := io.ReadFull(c, reply[:]); err != nil {
		return 0, fmt.Errorf("upload: sink count: %w", err)
	}
	got := int64(binary.BigEndian.Uint64(reply[:]))
	if got != sent {
		return got, fmt.Errorf("upload: sent %d bytes, sink counted %d", sent, got)
	}
	return got, nil
}

// downloadConn reads until end, half-closes to tell the source to stop, and reads the rest
// until the source's FIN.
func downloadConn(c *net.TCPConn, end time.Time, r *Runner) (int64, error) {
	buf := make([]byte, bulkChunk)
	if _, err := c.Write([]byte{ModeSource}); err != nil {
		return 0, fmt.Errorf("download: %w", err)
	}
	var got int64
	closed := false
	for {
		if !closed && !time.Now().Before(end) {
			if err := c.CloseWrite(); err != nil {
				return got, fmt.Errorf("download: close write: %w", err)
			}
			closed = true
		}
		n, err := c.Read(buf)
		got += int64(n)
		r.ops.Add(int64(n))
		if errors.Is(err, io.EOF) && closed {
			return got, nil
		}
		if err != nil {
			return got, fmt.Errorf("download: %w", err)
		}
	}
}
