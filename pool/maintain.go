package pool

import (
	"cmp"
	"context"
	"time"
)

// Maintenance is the pool's background work: sweeping expired backends and, when
// Checks.Interval is set, active health checks.
type Maintenance struct {
	// SweepInterval is how often Sweep runs; zero means 10s.
	SweepInterval time.Duration
	// Checks is the active health check; a zero Interval turns it off.
	Checks HealthCheck
}

// Maintain sweeps and checks on one ticker loop until ctx ends, then waits for a check round
// in progress to stop. A round runs on its own goroutine so a slow one never delays a sweep;
// a tick that finds the previous round still running is skipped.
func (p *Pool) Maintain(ctx context.Context, m Maintenance) {
	sweep := time.NewTicker(cmp.Or(m.SweepInterval, 10*time.Second))
	defer sweep.Stop()
	var checkTick <-chan time.Time
	if m.Checks.Interval > 0 {
		t := time.NewTicker(m.Checks.Interval)
		defer t.Stop()
		checkTick = t.C
	}
	var round chan struct{} // closed when the round in progress ends; nil when none runs
	defer func() {
		if round != nil {
			<-round
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			p.Sweep()
		case <-checkTick:
			if round != nil && !closed(round) {
				continue
			}
			round = make(chan struct{})
			go p.checkRoundDone(ctx, m.Checks, round)
		}
	}
}

// checkRoundDone runs one check round and closes done; Maintain owns and waits for it.
func (p *Pool) checkRoundDone(ctx context.Context, hc HealthCheck, done chan struct{}) {
	defer close(done)
	p.checkRound(ctx, hc)
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
