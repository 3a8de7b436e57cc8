package pool

import (
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
)

// MaxWeight is the largest weight a backend may have.
const MaxWeight = 256

// State is what a backend is doing, as the status API reports it.
type State string

// The states of a backend.
const (
	StateUp       State = "up"       // registered by heartbeat and within its TTL
	StateStatic   State = "static"   // configured at start; never expires
	StateExpired  State = "expired"  // missed its heartbeats; kept until its connections end
	StateRemoved  State = "removed"  // removed; kept until its connections end
	StateDown     State = "down"     // failed dials or health checks; no new connections
	StateDraining State = "draining" // drained by the admin API; established connections run on
)

// States lists every State, in the order above: what a backend can be reported as.
func States() []State {
	return []State{StateUp, StateStatic, StateExpired, StateRemoved, StateDown, StateDraining}
}

// Pickable reports whether a backend in state s may be chosen for new connections (a backend
// at its connection limit is still pickable: it takes the next one when a connection ends).
func (s State) Pickable() bool { return s == StateUp || s == StateStatic }

// Backend is one registered server. Its fields are guarded by the owning Pool's mu; callers
// outside the package see it only through its accessors and Snapshot.
type Backend struct {
	// Guarded by Pool.mu. What every heap comparison and pick reads comes first, so that it
	// shares as few cache lines as possible: at 100,000 backends picking is bound by misses.
	active        int64
	eff           int64  // effective weight in thousandths: weight×1000, less while ramping
	lastPick      uint64 // pool sequence number of the last pick, for fair tie-breaking
	index         int    // position in the live heap; -1 when not pickable
	lastHeartbeat time.Time
	static        bool // immutable
	removed       bool
	// What a pick writes, and the health flags it reads, fill the next line.
	total  uint64
	health health // draining, passive and active health (health.go)

	addr     Address // immutable, as are the fields up to hash
	key      string
	dialAddr string // "ip:port", or "name:port" for a name dialed by name
	hash     uint64 // xxhash of key, for rendezvous hashing

	weight  int
	created time.Time
	ramp    ramp // slow start (slowstart.go)

	rrSlot   int32  // position in its round-robin class; -1 when not a member (roundrobin.go)
	rrWeight int16  // the weight of that class
	rrRound  uint32 // 1 + the class round of its last turn; 0 if none

	// Atomic, outside Pool.mu: the data path adds to them per chunk without taking the lock.
	bytesIn  atomic.Uint64 // client → backend
	bytesOut atomic.Uint64 // backend → client
	// down mirrors health.down (written with it, under Pool.mu), so that the report of a
	// successful dial, which changes nothing for a backend that is up, takes no lock.
	down atomic.Bool

	// Pads the struct to 384 bytes, a size class of whole cache lines: every Backend then
	// starts a line, so its pick fields take two lines and no other backend's byte counters
	// share them (TestBackendFillsWholeCacheLines).
	_ [4]byte
}

func newBackend(a Address, weight int, static bool, now time.Time) *Backend {
	key := a.Key()
	return &Backend{
		addr:          a,
		key:           key,
		dialAddr:      net.JoinHostPort(a.DialHost(), strconv.Itoa(a.Port)),
		hash:          xxhash.Sum64String(key),
		static:        static,
		weight:        weight,
		lastHeartbeat: now,
		created:       now,
		index:         -1,
		eff:           int64(weight) * permille,
		health:        health{retryIndex: -1},
		rrSlot:        -1,
	}
}

// Key is "host:port", the backend's identity in the registry.
func (b *Backend) Key() string { return b.key }

// Address is the backend's host and port.
func (b *Backend) Address() Address { return b.addr }

// DialAddress is the address the listener dials: the IP resolved at registration when there
// is one, so that a name is never resolved again between the admin's checks and the dial.
func (b *Backend) DialAddress() string { return b.dialAddr }

// expired reports whether a heartbeat backend has outlived its TTL at now.
func (b *Backend) expired(now time.Time, ttl time.Duration) bool {
	return !b.static && ttl > 0 && now.Sub(b.lastHeartbeat) > ttl
}

func (b *Backend) state(now time.Time, ttl time.Duration) State {
	switch {
	case b.removed:
		return StateRemoved
	case b.expired(now, ttl):
		return StateExpired
	case b.health.draining:
		return StateDraining
	case b.health.down:
		return StateDown
	case b.static:
		return StateStatic
	}
	return StateUp
}

// Status is a point-in-time copy of one backend, for reporting.
type Status struct {
	Address       Address
	Key           string
	Weight        int
	Active        int64
	Total         uint64
	LastHeartbeat time.Time
	Created       time.Time
	State         State
	LastError     string    // the last dial or health-check failure; "" if none
	LastErrorTime time.Time // when LastError happened; zero if none
	BytesIn       uint64    // carried client → backend, over every connection so far
	BytesOut      uint64    // carried backend → client
	Static        bool      // configured at start (--backend, config file), not registered by heartbeat
	ChecksFailed  uint64    // active health checks failed since it was registered
}

func (b *Backend) status(now time.Time, ttl time.Duration) Status {
	return Status{
		Address:       b.addr,
		Key:           b.key,
		Weight:        b.weight,
		Active:        b.active,
		Total:         b.total,
		LastHeartbeat: b.lastHeartbeat,
		Created:       b.created,
		State:         b.state(now, ttl),
		LastError:     b.health.lastErr,
		LastErrorTime: b.health.lastErrTime,
		BytesIn:       b.bytesIn.Load(),
		BytesOut:      b.bytesOut.Load(),
		Static:        b.static,
		ChecksFailed:  b.health.checksFailed,
	}
}

// Moved adds n bytes to the backend's byte totals; up means client → backend. Its signature
// makes *Backend a listener.Meter, so the data path can count a connection's bytes on its
// backend chunk by chunk with no allocation and no lock.
func (b *Backend) Moved(up bool, n int64) {
	if up {
		b.bytesIn.Add(uint64(n))
		return
	}
	b.bytesOut.Add(uint64(n))
}

// Flush is the other half of the listener's Meter: the byte totals are atomic counters, so
// there is nothing to hand on.
func (b *Backend) Flush() {}
