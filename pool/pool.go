package pool

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Errors the pool returns for expected situations.
var (
	ErrNoBackend      = errors.New("no live backend")
	ErrUnknownBackend = errors.New("backend not registered")
	ErrNotAcquired    = errors.New("pool: release without a matching acquire")
	ErrRegistryFull   = errors.New("registry is full")
	// ErrUnavailable is a shared registry that cannot take a change now (its store does not
	// answer): the change was not made, or its outcome is unknown; the caller may try again.
	ErrUnavailable = errors.New("shared registry unavailable")
)

// Picker is what a data plane needs from a registry. Every method is safe for concurrent use.
//
// Acquire, Release and ReportDial are called on an event loop's thread (the epoll data plane),
// which every connection of that loop shares: they must not block (no network or disk I/O, no
// lock held across either, no waiting) and must not log synchronously; log through a
// non-blocking handler (internal/asynclog) instead. AcquireWait may block: the loops call it
// on a goroutine of its own.
type Picker interface {
	// Acquire picks a live backend other than those in exclude and counts one connection on
	// it, in one step. When every live backend is at its connection limit it returns ErrFull.
	Acquire(client netip.Addr, exclude []*Backend) (*Backend, error)
	// AcquireWait is Acquire, except that while every live backend is full it waits, in
	// arrival order, until one has room or ctx ends (then the error wraps ErrFull).
	AcquireWait(ctx context.Context, client netip.Addr, exclude []*Backend) (*Backend, error)
	// Release ends the connection counted by a successful Acquire. Call it exactly once.
	Release(b *Backend) error
	// ReportDial tells how the dial to a backend just acquired went (err nil: it connected):
	// the passive health check.
	ReportDial(b *Backend, err error)
}

// Registry is what the admin API needs from a registry. A registry shared by several
// balancers implements the same methods. Every method is safe for concurrent use.
type Registry interface {
	// Register adds a backend, or refreshes the heartbeat of a known one. A weight of 0 keeps
	// the current weight (1 for a new backend). It reports whether the backend is new. The
	// caller has checked a.IP (when set) against its address rules: a new backend keeps it
	// for every dial.
	Register(a Address, weight int) (created bool, err error)
	// Heartbeat refreshes a backend that is still registered (known, neither removed nor
	// forgotten), in one step, and reports whether it was. A weight of 0 keeps the current
	// one. An unknown backend is left alone: the caller registers it through every rule.
	Heartbeat(key string, weight int) (known bool, err error)
	// Lookup returns the status of the backend with this key, if it is still known.
	Lookup(key string) (Status, bool)
	// Deregister stops new connections to a backend; it is forgotten once its last one ends.
	Deregister(key string) error
	// Drain stops new connections to a registered backend until Undrain; established ones
	// run on and heartbeats keep it registered.
	Drain(key string) error
	// Undrain lets a drained backend take new connections again.
	Undrain(key string) error
	// Snapshot lists every backend still known, sorted by key.
	Snapshot() []Status
}

var (
	_ Picker   = (*Pool)(nil)
	_ Registry = (*Pool)(nil)
)

// Pool is an in-memory registry of backends. The zero value is an empty pool whose backends
// never expire, picking by least connections. Set the exported fields before first use.
type Pool struct {
	// TTL is how long a heartbeat keeps a backend pickable; zero means forever.
	TTL time.Duration
	// Policy chooses among live backends; nil means LeastConn. Set it before first use and
	// leave it: maglev keeps its table only while it is the policy.
	Policy Policy
	// Logger receives membership changes; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Tests replace it.
	Now func() time.Time
	// OnChange is told of every registry change, after the pool's lock is released and
	// before the changing method returns (so a synchronous save precedes the admin reply);
	// nil means nobody listens. See state.go.
	OnChange func(ChangeKind)
	// MaxBackends caps how many backends Register may hold: a new one beyond it gets ErrRegistryFull
	// and nothing is evicted (heartbeats of known backends still pass). Zero means no cap.
	// Static backends are never refused but do count.
	MaxBackends int
	// SlowStart is how long a backend that joins at runtime or comes back up takes to ramp its
	// effective weight from 10% to 100%; zero means no ramp (slowstart.go).
	SlowStart time.Duration
	// MaxConnsPerBackend caps each backend's connections; a full backend is skipped and
	// AcquireWait queues when all are full. Zero means no cap (limit.go).
	MaxConnsPerBackend int
	// HealthFall is how many failed active checks in a row mark a backend down; zero means 3.
	HealthFall int
	// HealthRise is how many passed checks in a row bring it back; zero means 2.
	HealthRise int

	mu       sync.Mutex
	backends map[string]*Backend // every backend still known, by key
	live     liveHeap            // the pickable subset of backends
	seq      uint64              // counts picks; orders ties between equally loaded backends
	picking  candidates          // scratch for acquire
	retry    retryHeap           // passively downed backends, by the end of their backoff
	ring     maglevRing          // the Maglev policy's lookup table (maglev.go)
	ramps    rampSet             // backends whose slow start is under way
	full     int                 // backends kept out of live only by MaxConnsPerBackend
	waiters  []waiter            // AcquireWait callers queued for a free slot, oldest first
}

func (p *Pool) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Pool) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

func (p *Pool) healthFall() int { return cmp.Or(p.HealthFall, 3) }

func (p *Pool) healthRise() int { return cmp.Or(p.HealthRise, 2) }

func (p *Pool) policy() Policy {
	if p.Policy != nil {
		return p.Policy
	}
	return LeastConn
}

// Register implements Registry.
func (p *Pool) Register(a Address, weight int) (bool, error) {
	return p.register(a, weight, false)
}

// RegisterStatic adds a backend that never expires, as configured at start.
func (p *Pool) RegisterStatic(a Address, weight int) error {
	_, err := p.register(a, weight, true)
	return err
}

func (p *Pool) register(a Address, weight int, static bool) (bool, error) {
	if err := CheckWeight(weight); err != nil {
		return false, err
	}
	now := p.now()
	kind := ChangeHeartbeat
	p.mu.Lock()
	defer p.unlockChanged(&kind)
	if p.backends == nil {
		p.backends = make(map[string]*Backend)
	}
	if b := p.backends[a.Key()]; b != nil {
		kind = p.refresh(b, weight, now)
		return false, nil
	}
	if !static {
		if err := p.roomFor(); err != nil {
			return false, err
		}
	}
	b := newBackend(a, max(weight, 1), static, now)
	p.backends[b.key] = b
	if !static {
		p.startRamp(b, now) // joins at runtime: ramps up
	}
	p.place(b, now)
	p.logger().Info("backend added", "backend", b.key, "weight", b.weight, "static", static)
	kind = ChangeMembership
	return true, nil
}

// CheckRoom reports whether Register would take the backend with this key: it is known, or
// the pool is below MaxBackends. A registry in front of the pool (a shared one) asks first, so
// it writes nothing for a backend the pool would refuse.
func (p *Pool) CheckRoom(key string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.backends[key] != nil {
		return nil
	}
	return p.roomFor()
}

// roomFor is ErrRegistryFull when the pool holds MaxBackends. Called with p.mu held.
func (p *Pool) roomFor() error {
	if p.MaxBackends > 0 && len(p.backends) >= p.MaxBackends {
		return fmt.Errorf("%w: %d backends", ErrRegistryFull, len(p.backends))
	}
	return nil
}

// Heartbeat implements Registry.
func (p *Pool) Heartbeat(key string, weight int) (bool, error) {
	if err := CheckWeight(weight); err != nil {
		return false, err
	}
	now := p.now()
	kind := noChange
	p.mu.Lock()
	defer p.unlockChanged(&kind)
	b := p.backends[key]
	if b == nil || b.removed {
		return false, nil
	}
	kind = p.refresh(b, weight, now)
	return true, nil
}

// refresh records a heartbeat of a known backend and says what kind of change it was. A
// heartbeat keeps a backend alive; it does not end draining or a down state.
func (p *Pool) refresh(b *Backend, weight int, now time.Time) ChangeKind {
	kind := ChangeHeartbeat
	if b.removed || b.expired(now, p.TTL) {
		p.logger().Info("backend back", "backend", b.key, "active", b.active)
		kind = ChangeMembership
		p.startRamp(b, now)
	}
	b.lastHeartbeat = now
	b.removed = false
	if weight != 0 && weight != b.weight {
		b.weight = weight
		kind = max(kind, ChangeWeight)
		p.setEffective(b, now)
	}
	p.place(b, now)
	return kind
}

// CheckWeight accepts a weight that Register and Heartbeat take: 0 (keep the current one) up
// to MaxWeight.
func CheckWeight(weight int) error {
	if weight < 0 || weight > MaxWeight {
		return fmt.Errorf("weight %d outside 1..%d", weight, MaxWeight)
	}
	return nil
}

// Deregister implements Registry.
func (p *Pool) Deregister(key string) error {
	kind := noChange
	p.mu.Lock()
	defer p.unlockChanged(&kind)
	b := p.backends[key]
	if b == nil || b.removed {
		return fmt.Errorf("%w: %s", ErrUnknownBackend, key)
	}
	kind = ChangeMembership
	b.removed = true
	now := p.now()
	p.place(b, now)
	p.logger().Info("backend removed", "backend", key, "active", b.active)
	p.forgetIfIdle(b, now)
	return nil
}

// forgetIfIdle drops a removed or expired backend whose last connection has ended.
func (p *Pool) forgetIfIdle(b *Backend, now time.Time) {
	if b.active != 0 || !(b.removed || b.expired(now, p.TTL)) || p.backends[b.key] != b {
		return
	}
	if b.index >= 0 {
		p.live.remove(b)
	}
	p.retry.drop(b)
	p.setFull(b, false)
	delete(p.backends, b.key)
	p.logger().Info("backend forgotten", "backend", b.key)
}

// Acquire implements Picker: it picks by Policy and counts the connection in one step. When
// every live backend is at MaxConnsPerBackend it returns ErrFull (AcquireWait queues instead).
func (p *Pool) Acquire(client netip.Addr, exclude []*Backend) (*Backend, error) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acquire(now, client, exclude)
}

func (p *Pool) acquire(now time.Time, client netip.Addr, exclude []*Backend) (*Backend, error) {
	p.endBackoffs(now)
	p.stepRamps(now)
	policy := p.policy()
	p.live.setOrdered(policy.ordered())
	p.live.setRoundRobin(policy == RoundRobin)
	for len(p.live.items) > 0 && p.live.items[0].expired(now, p.TTL) {
		p.tableExpired(p.live.items[0])
		p.live.remove(p.live.items[0])
	}
	// The candidates live in the pool, reused under the lock: passed to the policy interface,
	// a local one would escape and cost an allocation per pick.
	c := &p.picking
	*c = candidates{live: p.live, all: p.backends, anyFull: p.full > 0, now: now, ttl: p.TTL, exclude: exclude, stale: c.stale[:0], table: p.currentTable(policy)}
	b := policy.pick(c, client)
	for _, s := range c.stale {
		p.tableExpired(s)
		if s.index >= 0 {
			p.live.remove(s)
		}
	}
	clear(c.stale)
	c.exclude, c.all = nil, nil
	if b == nil {
		if p.full > 0 {
			return nil, ErrFull
		}
		return nil, ErrNoBackend
	}
	p.seq++
	b.lastPick = p.seq
	b.active++
	b.total++
	if b.health.down {
		b.health.trialing = true // its backoff ended: this connection is its one trial
	}
	p.place(b, now)
	if len(p.waiters) > 0 && len(p.live.items) > 0 {
		p.wakeOne() // room is left: pass the turn on to the next queued caller
	}
	return b, nil
}

// Release implements Picker.
func (p *Pool) Release(b *Backend) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b.active <= 0 {
		return fmt.Errorf("%w: %s", ErrNotAcquired, b.key)
	}
	b.active--
	if b.index >= 0 { // still pickable: only its load changed (expiry is checked at pick)
		p.live.fix(b.index)
		return nil
	}
	// Out of the heap: full, down, draining, removed or expired. Its state decides.
	now := p.now()
	b.health.trialing = false // a trial nobody reported on may be tried again
	p.place(b, now)
	if b.index < 0 {
		p.forgetIfIdle(b, now)
	}
	return nil
}

// Sweep stops picking backends whose TTL has passed and forgets those with no connection left.
// It returns how many it forgot.
func (p *Pool) Sweep() int {
	now := p.now()
	kind := noChange
	p.mu.Lock()
	defer p.unlockChanged(&kind)
	n := len(p.backends)
	for _, b := range p.backends {
		if !b.expired(now, p.TTL) {
			continue
		}
		if b.index >= 0 {
			p.logger().Info("backend expired", "backend", b.key, "active", b.active)
		}
		p.tableExpired(b)
		p.place(b, now)
		p.forgetIfIdle(b, now)
	}
	if n != len(p.backends) {
		kind = ChangeMembership
	}
	return n - len(p.backends)
}

// Snapshot implements Registry.
func (p *Pool) Snapshot() []Status {
	now := p.now()
	p.mu.Lock()
	out := make([]Status, 0, len(p.backends))
	for _, b := range p.backends {
		out = append(out, b.status(now, p.TTL))
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b Status) int { return cmp.Compare(a.Key, b.Key) })
	return out
}

// Len is the number of backends still known, live or not.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.backends)
}
