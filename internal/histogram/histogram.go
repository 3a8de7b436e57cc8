// Package histogram counts durations into fixed buckets with atomic adds: recording one costs
// two atomic adds and a search of the bounds, with no lock and no allocation, so a data path
// can record every connection. A reader takes a Snapshot at any time, concurrently with
// writers; it never blocks them.
//
//	bounds := histogram.NewBounds(time.Millisecond, 10*time.Millisecond, time.Second)
//	h := histogram.New(bounds) // the one allocation, when the series is created
//	h.Observe(time.Since(start))
//	var s histogram.Snapshot
//	h.Snapshot(&s) // s.Count, s.Sum, s.Cumulative(i)
//
// What it does not do: quantiles (a reader computes them from the buckets, which unlike
// quantiles can be summed across processes), decay or reset, and export to any format (the
// caller turns a Snapshot into its own exposition).
package histogram

import (
	"fmt"
	"sync/atomic"
	"time"
)

// Bounds are the buckets' upper bounds, inclusive, in increasing order; a last bucket with no
// bound (+Inf) takes everything above them. Bounds are immutable and shared by every
// Histogram made with them.
type Bounds struct {
	upper   []time.Duration
	seconds []float64 // upper, in seconds: what an exposition labels a bucket with
}

// NewBounds returns the bounds given; it panics unless they are positive and increasing,
// since bounds are fixed by the program, not by input.
func NewBounds(upper ...time.Duration) *Bounds {
	b := &Bounds{upper: append([]time.Duration(nil), upper...), seconds: make([]float64, len(upper))}
	for i, u := range upper {
		if u <= 0 || (i > 0 && u <= upper[i-1]) {
			panic(fmt.Sprintf("histogram: bound %v at %d is not positive and above the one before", u, i))
		}
		b.seconds[i] = u.Seconds()
	}
	return b
}

// Len is the number of bounds (buckets less the +Inf one).
func (b *Bounds) Len() int { return len(b.upper) }

// Seconds is bound i in seconds.
func (b *Bounds) Seconds(i int) float64 { return b.seconds[i] }

// bucket is the index of the first bucket whose bound is at least d: len(upper) for +Inf. A
// plain binary search, so that nothing escapes and nothing is allocated.
func (b *Bounds) bucket(d time.Duration) int {
	lo, hi := 0, len(b.upper)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if b.upper[mid] < d {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// Histogram counts durations into its Bounds' buckets. Its zero value is not usable: make one
// with New. Every method is safe for concurrent use.
type Histogram struct {
	bounds *Bounds
	counts []atomic.Uint64 // one per bound, and the +Inf bucket last; not cumulative
	sum    atomic.Int64    // nanoseconds: an integer add is one instruction, a float sum a CAS loop
}

// New returns an empty Histogram over bounds; its storage is allocated here, once.
func New(bounds *Bounds) *Histogram {
	return &Histogram{bounds: bounds, counts: make([]atomic.Uint64, bounds.Len()+1)}
}

// Observe counts one duration; a negative one (a clock step) counts as 0.
func (h *Histogram) Observe(d time.Duration) {
	d = max(d, 0)
	h.counts[h.bounds.bucket(d)].Add(1)
	h.sum.Add(int64(d))
}

// Bounds are the histogram's bounds.
func (h *Histogram) Bounds() *Bounds { return h.bounds }

// Snapshot is what a Histogram had counted at one read. Count is always the sum of the
// buckets, so that an exposition's +Inf bucket equals its count; Sum is read beside them and
// may include an observation whose bucket was not yet counted, or miss one that was.
type Snapshot struct {
	Count      uint64
	Sum        time.Duration
	cumulative []uint64 // cumulative[i]: observations at or below bound i
}

// Cumulative is the number of observations at or below bound i; 0 in a Snapshot never read
// into (the sum of no histogram).
func (s *Snapshot) Cumulative(i int) uint64 {
	if i >= len(s.cumulative) {
		return 0
	}
	return s.cumulative[i]
}

// Snapshot reads h into s, reusing s's storage, so that a reader of many histograms can
// read them all into one Snapshot.
func (h *Histogram) Snapshot(s *Snapshot) {
	s.cumulative = s.cumulative[:0]
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
		if i < h.bounds.Len() {
			s.cumulative = append(s.cumulative, n)
		}
	}
	s.Count, s.Sum = n, time.Duration(h.sum.Load())
}

// Merge adds o to s, which must be over the same bounds or empty: for sums of several
// histograms, such as a total over services.
func (s *Snapshot) Merge(o *Snapshot) {
	if len(s.cumulative) == 0 {
		s.cumulative = make([]uint64, len(o.cumulative))
	}
	for i, c := range o.cumulative {
		s.cumulative[i] += c
	}
	s.Count += o.Count
	s.Sum += o.Sum
}
