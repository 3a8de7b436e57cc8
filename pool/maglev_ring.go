package pool

import (
	"context"
	"fmt"
	"runtime"
	"time"
)

// maglevRing keeps a pool's Maglev table in step with its registry. A change of membership or
// weight only counts itself under Pool.mu; one builder goroutine at a time copies the member
// list under the lock, builds the table without it, and publishes the result with a pointer
// store under the lock, so a pick never waits for a build and always reads a whole table.
// While a build runs, picks use the previous table. All fields are guarded by Pool.mu.
type maglevRing struct {
	table    *maglevTable  // what picks read; never modified once published
	changes  uint64        // changes that affect the table, counted since the pool began
	built    uint64        // how many of them the published table reflects
	readAt   time.Time     // when the newest member list (published or being built) was read
	building bool          // a builder goroutine is running
	settled  chan struct{} // closed when the next table is published; nil while nobody waits
}

// size is the published table's size; 0 when there is none.
func (r *maglevRing) size() uint64 {
	if r.table == nil {
		return 0
	}
	return uint64(len(r.table.slots))
}

// tableChanged records, under p.mu, that membership or a weight changed, and starts the
// builder unless it is running (it will see the change before it ends). It does nothing when
// the policy is not Maglev.
func (p *Pool) tableChanged() {
	if p.policy() != Maglev {
		return
	}
	p.ring.changes++
	if !p.ring.building {
		p.ring.building = true
		go p.buildTables()
	}
}

// tableExpired records, under p.mu, that b's TTL has passed, unless the newest member list
// was read after that and so already leaves b out.
func (p *Pool) tableExpired(b *Backend) {
	if !b.expired(p.ring.readAt, p.TTL) {
		p.tableChanged()
	}
}

// currentTable returns the table for a pick, under p.mu. A pool given the Maglev policy after
// its backends were registered has seen no change yet: its first pick starts the first build.
func (p *Pool) currentTable(policy Policy) *maglevTable {
	if p.ring.table == nil && p.ring.changes == 0 && policy == Maglev && len(p.backends) > 0 {
		p.tableChanged()
	}
	return p.ring.table
}

// buildTables is the builder goroutine. It owns no state of its own: it rebuilds until the
// published table reflects every change counted, then ends, so it never outlives the last
// change by more than one build.
func (p *Pool) buildTables() {
	p.mu.Lock()
	for p.ring.built < p.ring.changes {
		upTo := p.ring.changes
		members, cur := p.tableMembers(), p.ring.size()
		p.mu.Unlock()
		t := buildMaglev(members, maglevSize(len(members), cur))
		p.mu.Lock()
		p.ring.table, p.ring.built = t, upTo
		if p.ring.settled != nil {
			close(p.ring.settled)
			p.ring.settled = nil
		}
	}
	p.ring.building = false
	p.mu.Unlock()
}

// tableMembers lists the backends the table is built over: every registered backend that is
// neither removed nor expired. It is called with p.mu held and returns with it held, but lets
// go of it between batches of memberBatch backends, so that a pick never waits for more than
// a batch (copying 100,000 backends takes milliseconds: each is a cache miss). A change made
// between batches may or may not be seen; it was counted, so the next build sees it.
func (p *Pool) tableMembers() []maglevMember {
	now := p.now()
	p.ring.readAt = now
	members := make([]maglevMember, 0, len(p.backends))
	seen := 0
	for _, b := range p.backends {
		if seen++; seen%memberBatch == 0 {
			p.mu.Unlock()
			runtime.Gosched() // a waiting pick takes the lock before this goroutine does again
			p.mu.Lock()
		}
		if !b.removed && !b.expired(now, p.TTL) {
			members = append(members, maglevMember{b: b, weight: b.weight})
		}
	}
	return members
}

// memberBatch is how many backends tableMembers copies per hold of the lock.
const memberBatch = 1024

// WaitTable waits until the Maglev table reflects every change of membership or weight made
// before the call, or ctx ends. Changes reach the table one build later: milliseconds for
// hundreds of backends, about a second at 100,000; meanwhile picks use the previous table, and
// a removed backend's clients fall back to least connections. It returns at once when the
// policy is not Maglev. Tests, and a start-up that wants its first connections placed by the
// table, call it.
func (p *Pool) WaitTable(ctx context.Context) error {
	p.mu.Lock()
	upTo := p.ring.changes
	for p.ring.built < upTo {
		if p.ring.settled == nil {
			p.ring.settled = make(chan struct{})
		}
		settled := p.ring.settled
		p.mu.Unlock()
		select {
		case <-settled:
		case <-ctx.Done():
			return fmt.Errorf("pool: wait for the maglev table: %w", ctx.Err())
		}
		p.mu.Lock()
	}
	p.mu.Unlock()
	return nil
}
