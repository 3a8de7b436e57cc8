package pool

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"sync"
	"time"
)

// HealthCheck is the active health check: every Interval, a TCP connection to each backend
// that is neither removed nor expired, bounded by Timeout, at most Concurrency at once. The
// pool counts the outcomes (ReportCheck, HealthFall, HealthRise) and decides states; a check
// never holds the pool's lock while it dials, so it never slows down picking.
type HealthCheck struct {
	// Interval is the time between the starts of two rounds; zero means checks are off. A
	// round that takes longer delays the next one rather than overlapping it.
	Interval time.Duration
	// Timeout bounds one connect; zero means 5s.
	Timeout time.Duration
	// Concurrency is how many checks run at once; zero means 64.
	Concurrency int
	// Dial opens a check connection; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// checkRound checks every target once, at most hc.Concurrency at a time, reports each
// outcome, and returns when all are done or ctx ends.
func (p *Pool) checkRound(ctx context.Context, hc HealthCheck) {
	targets := p.checkTargets()
	work := make(chan *Backend)
	var wg sync.WaitGroup
	for range min(cmp.Or(hc.Concurrency, 64), len(targets)) {
		wg.Add(1)
		go p.checkWorker(ctx, hc, work, &wg)
	}
	defer wg.Wait()
	defer close(work)
	for _, b := range targets {
		select {
		case work <- b:
		case <-ctx.Done():
			return
		}
	}
}

// checkWorker is one of a round's check goroutines, named so stack dumps say what it is.
func (p *Pool) checkWorker(ctx context.Context, hc HealthCheck, work <-chan *Backend, wg *sync.WaitGroup) {
	defer wg.Done()
	for b := range work {
		err := hc.check(ctx, b)
		if ctx.Err() != nil {
			return // shutting down: a check cut short says nothing about the backend
		}
		p.ReportCheck(b, err)
	}
}

func (hc HealthCheck) check(ctx context.Context, b *Backend) error {
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(hc.Timeout, 5*time.Second))
	defer cancel()
	dial := hc.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	conn, err := dial(ctx, "tcp", b.DialAddress())
	if err != nil {
		return fmt.Errorf("health check %s: %w", b.DialAddress(), err)
	}
	conn.Close()
	return nil
}
