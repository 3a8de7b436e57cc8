package pool

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// Passive health backoff: a backend whose dial fails is left alone this long, doubling on each
// failed trial up to the maximum.
const (
	firstBackoff = time.Second
	maxBackoff   = 30 * time.Second
)

// health is a backend's draining flag and what dials and health checks have said of it.
// Guarded by Pool.mu.
type health struct {
	draining bool // set by Drain, cleared only by Undrain: heartbeats do not end it

	down       bool          // no new connections until a trial dial or a check brings it back
	byChecks   bool          // down because active checks failed: only checks bring it back
	atLimit    bool          // out of the live heap only because of MaxConnsPerBackend
	backoff    time.Duration // the current passive backoff; 0 once a dial succeeds
	retryAt    time.Time     // when the passive backoff ends
	retryIndex int           // position in Pool.retry; -1 when not waiting out a backoff
	trialing   bool          // a connection is dialing it after its backoff ended

	fails, passes int    // active check results in a row
	checksFailed  uint64 // active checks failed since the backend was registered

	lastErr     string
	lastErrTime time.Time
}

// eligible reports whether b may take new connections at now, ignoring its connection limit.
// A passively downed backend whose backoff has ended is eligible for one trial connection.
func (b *Backend) eligible(now time.Time, ttl time.Duration) bool {
	h := &b.health
	switch {
	case b.removed, h.draining, b.expired(now, ttl):
		return false
	case h.down:
		return !h.byChecks && h.retryIndex < 0 && !h.trialing
	}
	return true
}

// place puts b into the live heap or takes it out, as its state and count now say, and keeps
// its heap position current. Every change of a backend's count or state ends here.
func (p *Pool) place(b *Backend, now time.Time) {
	eligible := b.eligible(now, p.TTL)
	full := p.MaxConnsPerBackend > 0 && b.active >= int64(p.MaxConnsPerBackend)
	want := eligible && !full
	switch {
	case want && b.index < 0:
		p.live.push(b)
		p.wakeOne() // one more backend can take a connection
	case want:
		p.live.fix(b.index)
	case b.index >= 0:
		p.live.remove(b)
	}
	p.setFull(b, eligible && full)
}

// BackendFault reports whether a failed dial or check is the backend's fault. Running out of
// descriptors, ports or buffers on the balancer's side, or the balancer shutting down, is not.
// Nor is a reset during connect: the handshake completed, so the backend accepted and then
// reset, which on loopback can happen before connect(2) has reported success.
func BackendFault(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EMFILE),
		errors.Is(err, syscall.ENFILE),
		errors.Is(err, syscall.EADDRNOTAVAIL),
		errors.Is(err, syscall.ENOBUFS),
		errors.Is(err, context.Canceled):
		return false
	}
	return true
}

// ReportDial implements Picker: the passive health check. A failed dial marks b down
// for a backoff of 1 s; when it ends, the next connection tries b (its trial): success brings
// it back, failure doubles the backoff up to 30 s. Failures of connections that were already
// dialing when b went down do not double it again. Errors that are not b's fault change nothing.
func (p *Pool) ReportDial(b *Backend, err error) {
	if err == nil && !b.down.Load() {
		return // up: a success has nothing to change (a down backend's backoff is 0 after markUp)
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	h := &b.health
	if p.backends[b.key] != b {
		return
	}
	switch {
	case err == nil:
		h.backoff = 0
		if h.down && !h.byChecks {
			p.markUp(b, now, "dial succeeded")
		}
	case !BackendFault(err):
		h.trialing = false
		p.place(b, now)
	default:
		p.noteError(b, now, err)
		switch {
		case !h.down:
			h.backoff = firstBackoff
		case h.byChecks || now.Before(h.retryAt):
			return // already down; a straggler's failure says nothing new
		default:
			h.backoff = min(2*h.backoff, maxBackoff)
		}
		p.markDown(b, now, true, err)
	}
}

// ReportCheck records an active health check of b (Maintain's, or another checker's): after
// HealthFall failures in a row b is down until HealthRise passes in a row. One pass also ends
// a passive backoff early.
func (p *Pool) ReportCheck(b *Backend, err error) {
	fall, rise := p.healthFall(), p.healthRise()
	if err != nil && !BackendFault(err) {
		return
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	h := &b.health
	if p.backends[b.key] != b {
		return
	}
	if err == nil {
		h.fails = 0
		h.passes++
		if h.down && (!h.byChecks || h.passes >= rise) {
			p.markUp(b, now, "health check passed")
		}
		return
	}
	h.passes = 0
	h.fails++
	h.checksFailed++
	p.noteError(b, now, err)
	if h.fails >= fall && !(h.down && h.byChecks) {
		p.markDown(b, now, false, err)
	}
}

func (p *Pool) noteError(b *Backend, now time.Time, err error) {
	b.health.lastErr, b.health.lastErrTime = err.Error(), now
}

// markDown takes b out of picking: passively for its backoff, or by checks until they pass.
// Only the change from up to down is logged, once.
func (p *Pool) markDown(b *Backend, now time.Time, passive bool, err error) {
	h := &b.health
	was := h.down
	h.down, h.byChecks, h.trialing = true, !passive, false
	b.down.Store(true)
	if passive {
		h.retryAt = now.Add(h.backoff)
		p.retry.set(b)
	} else {
		p.retry.drop(b)
	}
	p.place(b, now)
	switch {
	case !was:
		p.logger().Warn("backend down", "backend", b.key, "by", cause(passive), "err", err, "retry_in", retryIn(passive, h.backoff))
	case passive:
		p.logger().Debug("backend still down", "backend", b.key, "err", err, "retry_in", h.backoff)
	}
}

func cause(passive bool) string {
	if passive {
		return "dial"
	}
	return "health check"
}

func retryIn(passive bool, d time.Duration) any {
	if passive {
		return d
	}
	return "after passing checks"
}

// markUp returns b to picking; it ramps up if slow start is on.
func (p *Pool) markUp(b *Backend, now time.Time, why string) {
	h := &b.health
	h.down, h.byChecks, h.trialing, h.backoff, h.fails = false, false, false, 0, 0
	b.down.Store(false)
	p.retry.drop(b)
	p.startRamp(b, now)
	p.place(b, now)
	p.logger().Info("backend up", "backend", b.key, "by", why)
}

// checkTargets lists the backends worth an active health check: every known one that is
// neither removed nor expired.
func (p *Pool) checkTargets() []*Backend {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*Backend, 0, len(p.backends))
	for _, b := range p.backends {
		if !b.removed && !b.expired(now, p.TTL) {
			out = append(out, b)
		}
	}
	return out
}

// Drain implements Registry.
func (p *Pool) Drain(key string) error { return p.setDraining(key, true) }

// Undrain implements Registry.
func (p *Pool) Undrain(key string) error { return p.setDraining(key, false) }

func (p *Pool) setDraining(key string, on bool) error {
	now := p.now()
	kind := noChange
	p.mu.Lock()
	defer p.unlockChanged(&kind) // a state change: persisted before the admin reply
	b := p.backends[key]
	if b == nil || b.removed {
		return fmt.Errorf("%w: %s", ErrUnknownBackend, key)
	}
	if b.health.draining == on {
		return nil
	}
	kind = ChangeState
	b.health.draining = on
	if on {
		p.logger().Info("backend draining", "backend", key, "active", b.active)
	} else {
		p.logger().Info("backend undrained", "backend", key, "active", b.active)
		p.startRamp(b, now) // drained for a rolling upgrade, it comes back cold
	}
	p.place(b, now)
	return nil
}
