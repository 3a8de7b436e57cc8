package clientlimit

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// maxRate bounds R and BURST: beyond a million a second the limit is not a limit.
const maxRate = 1e6

// Rate is a token bucket's refill per second and size. The zero Rate is off.
type Rate struct {
	PerSecond float64
	Burst     int
}

// On reports whether r limits anything.
func (r Rate) On() bool { return r.PerSecond > 0 }

// String is r as --client-rate takes it.
func (r Rate) String() string {
	if !r.On() {
		return "0"
	}
	return strconv.FormatFloat(r.PerSecond, 'g', -1, 64) + "/" + strconv.Itoa(r.Burst)
}

// ParseRate reads a --client-rate value, R[/BURST]: R new connections a second (a decimal
// such as 0.5 is allowed), with bursts of up to BURST (default: R rounded up, at least 1).
// "0" (or "") is off.
func ParseRate(s string) (Rate, error) {
	rs, bs, hasBurst := strings.Cut(strings.TrimSpace(s), "/")
	if rs == "" && !hasBurst {
		return Rate{}, nil
	}
	r, err := strconv.ParseFloat(rs, 64)
	if err != nil || math.IsNaN(r) || r < 0 || r > maxRate {
		return Rate{}, fmt.Errorf("invalid value %q for --client-rate: the rate %q must be a number of new connections a second from 0 to %g, as in 20 or 20/40", s, rs, float64(maxRate))
	}
	if r == 0 {
		if hasBurst {
			return Rate{}, fmt.Errorf("invalid value %q for --client-rate: a burst needs a rate above 0", s)
		}
		return Rate{}, nil
	}
	burst := max(1, int(math.Ceil(r)))
	if hasBurst {
		b, err := strconv.Atoi(bs)
		if err != nil || b < 1 || b > maxRate {
			return Rate{}, fmt.Errorf("invalid value %q for --client-rate: the burst %q after '/' must be a whole number from 1 to %d", s, bs, int(maxRate))
		}
		burst = b
	}
	return Rate{PerSecond: r, Burst: burst}, nil
}

// bucket is one client's tokens; last is when they were counted (Unix nanoseconds).
type bucket struct {
	tokens float64
	last   int64
}

// take refills b for the time since its last count and spends a token if there is one.
func (b *bucket) take(r Rate, now int64) bool {
	if elapsed := now - b.last; elapsed > 0 {
		b.tokens = min(float64(r.Burst), b.tokens+float64(elapsed)*r.PerSecond/1e9)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// full is a new client's bucket.
func full(r Rate, now int64) bucket { return bucket{tokens: float64(r.Burst), last: now} }
