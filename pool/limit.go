package pool

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// ErrFull is returned when every live backend is at MaxConnsPerBackend.
var ErrFull = errors.New("every live backend is at its connection limit")

// waiter is one queued AcquireWait; it receives a single token when it may try again.
type waiter chan struct{}

// AcquireWait implements Picker.
func (p *Pool) AcquireWait(ctx context.Context, client netip.Addr, exclude []*Backend) (*Backend, error) {
	front := false
	for {
		now := p.now()
		p.mu.Lock()
		b, err := p.acquire(now, client, exclude)
		if !errors.Is(err, ErrFull) {
			p.mu.Unlock()
			return b, err
		}
		w := make(waiter, 1)
		if front {
			p.waiters = slices.Insert(p.waiters, 0, w) // woken but beaten to the slot: keep its turn
		} else {
			p.waiters = append(p.waiters, w)
		}
		p.mu.Unlock()
		select {
		case <-w:
			front = true
		case <-ctx.Done():
			p.abandon(w)
			return nil, fmt.Errorf("%w: %w", ErrFull, ctx.Err())
		}
	}
}

// abandon takes a timed-out waiter off the queue; if it was woken meanwhile, it passes the
// turn on so that the slot is not wasted.
func (p *Pool) abandon(w waiter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := slices.Index(p.waiters, w); i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
		return
	}
	if len(w) > 0 {
		p.wakeOne()
	}
}

// wakeOne lets the oldest waiter try again.
func (p *Pool) wakeOne() {
	if len(p.waiters) == 0 {
		return
	}
	w := p.waiters[0]
	p.waiters = slices.Delete(p.waiters, 0, 1)
	w <- struct{}{} // buffered, and each waiter is woken once: never blocks
}

// setFull records whether b is kept out of the live heap only by its connection limit.
func (p *Pool) setFull(b *Backend, full bool) {
	if b.health.atLimit == full {
		return
	}
	b.health.atLimit = full
	if full {
		p.full++
	} else {
		p.full--
	}
}
