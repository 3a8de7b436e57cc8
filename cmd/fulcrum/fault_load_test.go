package main

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFault_5000ConcurrentConnections: 5,000 connections held open at once through 4 backends
// (in a child process), then each moves 256 KiB both ways with SHA-256 checked. The balancer
// (its own process) holds 10,000 sockets; the spread is exact; every count and socket is back
// to zero within 1 s of the last close.
func TestFault_5000ConcurrentConnections(t *testing.T) {
	eachPlane(t, testFault_5000ConcurrentConnections)
}

func testFault_5000ConcurrentConnections(t *testing.T) {
	const n = 5000
	cb := startChildBackends(t, 4)
	args := []string{"--drain-timeout", "5s"}
	for _, a := range cb.addrs {
		args = append(args, "--backend", a)
	}
	b := startBalancer(t, args...)

	var r clientRun
	var lastClose atomic.Int64
	var connected, done sync.WaitGroup
	release := make(chan struct{})
	dialing := make(chan struct{}, 128) // a bounded dial rate keeps the accept backlog short
	start := time.Now()
	for range n {
		connected.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			dialing <- struct{}{}
			x, err := dialXfer(b.listen, maxStream, maxStream)
			<-dialing
			connected.Done()
			if err != nil {
				r.record(err)
				return
			}
			<-release
			err = x.finish()
			now := time.Now().UnixNano()
			for last := lastClose.Load(); now > last && !lastClose.CompareAndSwap(last, now); last = lastClose.Load() {
			}
			r.record(err)
		}()
	}
	connected.Wait()
	if r.failed.Load() != 0 {
		close(release)
		done.Wait()
		t.Fatalf("%d of %d connections failed to open (first: %v)", r.failed.Load(), n, r.firstErr)
	}
	eventually(t, 30*time.Second, "5,000 connections held by the balancer", func() bool { return activeConns(t, b.admn) == n })
	held := time.Since(start)
	st := status(t, b.admn)
	lo, hi := int64(n), int64(0)
	for _, s := range st {
		lo, hi = min(lo, s.ConnCount), max(hi, s.ConnCount)
	}
	sockets := socketCount(b.pid())
	if hi-lo > 1 {
		t.Errorf("held connections spread %d..%d over 4 backends; want max-min <= 1", lo, hi)
	}

	xferStart := time.Now()
	close(release)
	done.Wait()
	xferTime := time.Since(xferStart)
	last := time.Unix(0, lastClose.Load())
	eventually(t, 10*time.Second, "every conn_count back to 0", func() bool { return activeConns(t, b.admn) == 0 })
	zeroAfter := time.Since(last)
	settle(t, b)
	t.Logf("5000 connections: all held after %v (balancer sockets %d, spread %d..%d); %d ok, %d failed; %d MiB each way in %v; counts at 0 %v after the last close",
		held.Round(time.Millisecond), sockets, lo, hi, r.ok.Load(), r.failed.Load(), n*maxStream>>20, xferTime.Round(time.Millisecond), zeroAfter.Round(time.Millisecond))
	if r.failed.Load() != 0 || r.ok.Load() != n {
		t.Fatalf("%d of %d transfers failed (first: %v)", r.failed.Load(), n, r.firstErr)
	}
	if zeroAfter > time.Second {
		t.Fatalf("counts reached 0 only %v after the last close; want within 1 s", zeroAfter)
	}
}
