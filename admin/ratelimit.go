package admin

import (
	"container/list"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// defaultMaxBuckets bounds the limiter when Security.MaxBuckets is zero: about 2 MiB.
const defaultMaxBuckets = 16384

// heartbeatFree is the spacing at which heartbeats of a known backend cost nothing: a backend
// that heartbeats every second is never limited however many share its client address, while
// one that hammers add is charged like any other mutating request.
const heartbeatFree = 500 * time.Millisecond

// limiter is a token bucket per client: an IPv4 address or an IPv6 /64 (what one host
// usually gets). It holds at most maxBuckets buckets and forgets the least recently used; a
// forgotten client starts again with a full bucket, which is what an idle one has anyway.
type limiter struct {
	limit      rate.Limit
	burst      int
	maxBuckets int

	mu      sync.Mutex
	buckets map[netip.Prefix]*list.Element // of *bucket
	lru     list.List                      // front: most recently used
}

type bucket struct {
	key netip.Prefix
	lim *rate.Limiter
}

func newLimiter(limit rate.Limit, burst, capacity int) *limiter {
	if burst <= 0 {
		burst = max(int(2*limit), 1)
	}
	if capacity <= 0 {
		capacity = defaultMaxBuckets
	}
	return &limiter{limit: limit, burst: burst, maxBuckets: capacity, buckets: make(map[netip.Prefix]*list.Element)}
}

// clientKey is the bucket a client address falls in.
func clientKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64) // cannot fail for an IPv6 address
	return p
}

// take takes one token from the client's bucket and reports whether there was one; refund
// gives it back.
func (l *limiter) take(ip netip.Addr) (refund func(), ok bool) {
	r := l.bucket(clientKey(ip)).ReserveN(time.Now(), 1)
	if !r.OK() || r.Delay() > 0 {
		r.Cancel()
		return nil, false
	}
	return r.Cancel, true
}

// bucket returns the client's bucket, making it (and forgetting the least recently used one
// beyond maxBuckets) if need be.
func (l *limiter) bucket(key netip.Prefix) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.buckets[key]
	if e == nil {
		if l.lru.Len() >= l.maxBuckets {
			oldest := l.lru.Back()
			delete(l.buckets, oldest.Value.(*bucket).key)
			l.lru.Remove(oldest)
		}
		e = l.lru.PushFront(&bucket{key: key, lim: rate.NewLimiter(l.limit, l.burst)})
		l.buckets[key] = e
	} else {
		l.lru.MoveToFront(e)
	}
	return e.Value.(*bucket).lim
}

// size is the number of buckets held, for tests.
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}
