package pool

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Policy chooses the backend for a new connection among the live ones. Policies run under the
// pool's lock and must not block.
type Policy interface {
	// Name is the policy's --balance name.
	Name() string
	pick(c *candidates, client netip.Addr) *Backend
	// ordered reports whether the policy needs the live backends kept in heap order.
	ordered() bool
}

// The policies fulcrum offers.
var (
	// LeastConn picks the backend with the fewest active connections per unit of weight,
	// breaking ties in favour of the one picked longest ago.
	LeastConn Policy = leastConn{}
	// P2C compares two backends chosen at random and takes the lighter: O(1) however large the
	// pool.
	P2C Policy = powerOfTwo{}
	// Hash keeps each client address on one backend by rendezvous hashing; only the clients of
	// a backend that leaves move. It falls back to LeastConn when its choice is excluded.
	Hash Policy = rendezvous{}
	// Maglev keeps each client address on one backend through a lookup table: O(1) per pick
	// however large the pool, at the cost of a table rebuilt when membership changes
	// (maglev.go). When its choice cannot take the connection it falls back to the least
	// loaded backend, as Hash does, or in pools of more than 64 live backends to P2C.
	Maglev Policy = maglev{}
	// RoundRobin is smooth weighted round robin, as nginx does it: each backend in turn, as
	// often as its weight says, spread evenly (weights 1 and 2: b, a, b, b, a, b...), and
	// exact over sequential connections where LeastConn's weights only show under
	// concurrency. A pick costs O(k) for k distinct weights and nothing per backend: O(1)
	// however large the pool (roundrobin.go).
	RoundRobin Policy = roundRobin{}
)

// ParsePolicy returns the policy with the given --balance name.
func ParsePolicy(name string) (Policy, error) {
	for _, p := range []Policy{LeastConn, P2C, Hash, Maglev, RoundRobin} {
		if p.Name() == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("unknown balance policy %q (want leastconn, p2c, hash, maglev or roundrobin)", name)
}

// candidates is the view a policy picks from: the live heap, and what makes a live backend
// unusable for this pick (its TTL passed, or the caller excluded it after a failed dial).
type candidates struct {
	live    liveHeap
	all     map[string]*Backend // every known backend; hashing needs the full ones too
	anyFull bool                // some eligible backends are out of live only by their limit
	now     time.Time
	ttl     time.Duration
	exclude []*Backend
	stale   []*Backend   // expired backends met while picking; the pool prunes them after
	table   *maglevTable // the Maglev lookup table; nil until built or for other policies
}

func (c *candidates) usable(b *Backend) bool {
	if b.expired(c.now, c.ttl) {
		c.stale = append(c.stale, b)
		return false
	}
	return !slices.Contains(c.exclude, b)
}

// clientHash is what the hashing policies key a client on: its address, IPv4-mapped IPv6
// read as IPv4, hashed with xxhash.
func clientHash(client netip.Addr) uint64 {
	ip := client.Unmap().As16()
	return xxhash.Sum64(ip[:])
}

func (c *candidates) lightest() *Backend {
	return c.live.lightestWhere(c.usable)
}

type leastConn struct{}

func (leastConn) Name() string { return "leastconn" }

func (leastConn) pick(c *candidates, _ netip.Addr) *Backend { return c.lightest() }

func (leastConn) ordered() bool { return true }

type powerOfTwo struct{}

func (powerOfTwo) Name() string { return "p2c" }

// ordered is false: p2c draws from the live backends as a dense slice, so a pick and a
// release cost O(1) with no heap to keep; only its rare fall-back to the lightest is O(n).
func (powerOfTwo) ordered() bool { return false }

func (powerOfTwo) pick(c *candidates, _ netip.Addr) *Backend {
	n := len(c.live.items)
	if n < 2 {
		return c.lightest()
	}
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	a, b := c.live.items[i], c.live.items[j]
	if lighter(b, a) {
		a, b = b, a
	}
	switch {
	case c.usable(a):
		return a
	case c.usable(b):
		return b
	}
	return c.lightest()
}

type rendezvous struct{}

func (rendezvous) Name() string { return "hash" }

func (rendezvous) ordered() bool { return true }

// pick scores every backend that may take connections against the client and takes the
// highest score: O(n), which is what rendezvous hashing costs. A backend at its connection
// limit still takes part, so that its clients are not moved to another by hash; when the choice
// is full or excluded (its dial failed) the connection falls back to least connections.
func (rendezvous) pick(c *candidates, client netip.Addr) *Backend {
	h := clientHash(client)
	var best *Backend
	var bestScore uint64
	consider := func(b *Backend) {
		if b.expired(c.now, c.ttl) {
			c.stale = append(c.stale, b)
			return
		}
		if s := mix(h ^ b.hash); best == nil || s > bestScore {
			best, bestScore = b, s
		}
	}
	if c.anyFull {
		for _, b := range c.all {
			if b.index >= 0 || b.health.atLimit {
				consider(b)
			}
		}
	} else {
		for _, b := range c.live.items {
			consider(b)
		}
	}
	if best == nil || best.index < 0 || slices.Contains(c.exclude, best) {
		return c.lightest()
	}
	return best
}

// mix is the splitmix64 finalizer: it spreads the bits of the combined client and backend
// hashes so that each client ranks the backends in an independent order.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
