package listener

// Active health checks. Every Interval, a HealthChecker opens a TCP connection
// to each backend (bounded by Timeout, at most Concurrency at once) and tells the pool how it
// went. The pool marks a backend down after Fall failures in a row and up after Rise passes;
// one pass also ends a passive backoff early.
//
//	c := &listener.HealthChecker{Targets: p, Interval: 5 * time.Second, Timeout: 5 * time.Second}
//	go c.Run(ctx) // until ctx ends
//
// Checks never hold the pool's lock while they dial, so they never slow down picking. State
// changes are logged by the pool, once each. The pool, not
// the checker, decides states.

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// HealthTargets is what the checker needs from a registry; *pool.Pool implements it.
type HealthTargets interface {
	// CheckTargets lists the backends to check this round.
	CheckTargets() []*pool.Backend
	// ReportCheck records one check's outcome (err nil: it connected).
	ReportCheck(b *pool.Backend, err error, fall, rise int)
}

var _ HealthTargets = (*pool.Pool)(nil)

// HealthChecker checks every backend of HealthTargets by TCP connect. HealthTargets must be set; every other
// field's zero value is documented.
type HealthChecker struct {
	Targets HealthTargets
	// Interval is the time between the starts of two rounds; zero means 5s. A round that
	// takes longer delays the next one rather than overlapping it.
	Interval time.Duration
	// Timeout bounds one connect; zero means 5s.
	Timeout time.Duration
	// Fall is how many failures in a row mark a backend down; zero means 3.
	Fall int
	// Rise is how many passes in a row bring it back; zero means 2.
	Rise int
	// Concurrency is how many checks run at once; zero means 64.
	Concurrency int
	// Dial opens a check connection; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func hcOrDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Run checks every Interval until ctx ends; it returns once the round in progress is done.
func (c *HealthChecker) Run(ctx context.Context) {
	t := time.NewTicker(hcOrDefault(c.Interval, 5*time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.Round(ctx)
		}
	}
}

// Round checks every target once, at most Concurrency at a time, and returns when all are done.
func (c *HealthChecker) Round(ctx context.Context) {
	targets := c.Targets.CheckTargets()
	work := make(chan *pool.Backend)
	var wg sync.WaitGroup
	for range min(hcOrDefault(c.Concurrency, 64), len(targets)) {
		wg.Add(1)
		go c.checkWorker(ctx, work, &wg)
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
func (c *HealthChecker) checkWorker(ctx context.Context, work <-chan *pool.Backend, wg *sync.WaitGroup) {
	defer wg.Done()
	for b := range work {
		err := c.check(ctx, b)
		if ctx.Err() != nil {
			return // shutting down: a check cut short says nothing about the backend
		}
		c.Targets.ReportCheck(b, err, hcOrDefault(c.Fall, 3), hcOrDefault(c.Rise, 2))
	}
}

func (c *HealthChecker) check(ctx context.Context, b *pool.Backend) error {
	ctx, cancel := context.WithTimeout(ctx, hcOrDefault(c.Timeout, 5*time.Second))
	defer cancel()
	dial := c.Dial
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
