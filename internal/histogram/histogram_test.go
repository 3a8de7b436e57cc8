package histogram

import (
	"sync"
	"testing"
	"time"
)

var testBounds = NewBounds(time.Millisecond, 10*time.Millisecond, time.Second)

func TestObserveBuckets(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    time.Duration
		want []uint64 // cumulative at each bound
	}{
		{"zero", 0, []uint64{1, 1, 1}},
		{"negative counts as zero", -time.Second, []uint64{1, 1, 1}},
		{"on a bound is inside it", time.Millisecond, []uint64{1, 1, 1}},
		{"just above a bound", time.Millisecond + 1, []uint64{0, 1, 1}},
		{"middle", 500 * time.Millisecond, []uint64{0, 0, 1}},
		{"above every bound", time.Hour, []uint64{0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New(testBounds)
			h.Observe(tc.d)
			var s Snapshot
			h.Snapshot(&s)
			if s.Count != 1 {
				t.Errorf("count %d, want 1", s.Count)
			}
			if want := max(tc.d, 0); s.Sum != want {
				t.Errorf("sum %v, want %v", s.Sum, want)
			}
			for i, w := range tc.want {
				if got := s.Cumulative(i); got != w {
					t.Errorf("bucket le=%v: %d, want %d", testBounds.Seconds(i), got, w)
				}
			}
		})
	}
}

func TestConcurrentObserveAddsUp(t *testing.T) {
	h := New(testBounds)
	const writers, each = 4, 1000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				h.Observe(time.Duration(w*each+i) * time.Millisecond)
			}
		}()
	}
	var s Snapshot
	for range 10 { // reads race with the writers; the count is always the buckets' sum
		h.Snapshot(&s)
	}
	wg.Wait()
	h.Snapshot(&s)
	if s.Count != writers*each {
		t.Fatalf("count %d, want %d", s.Count, writers*each)
	}
	// 0..3999 ms: 2 at or below 1 ms, 11 at or below 10 ms, 1001 at or below 1 s.
	for i, w := range []uint64{2, 11, 1001} {
		if got := s.Cumulative(i); got != w {
			t.Errorf("bucket %d: %d, want %d", i, got, w)
		}
	}
	if want := time.Duration(writers*each*(writers*each-1)/2) * time.Millisecond; s.Sum != want {
		t.Errorf("sum %v, want %v", s.Sum, want)
	}
}

func TestMerge(t *testing.T) {
	a, b := New(testBounds), New(testBounds)
	a.Observe(time.Millisecond)
	b.Observe(time.Minute)
	b.Observe(5 * time.Millisecond)
	var total, one Snapshot
	for _, h := range []*Histogram{a, b} {
		h.Snapshot(&one)
		total.Merge(&one)
	}
	if total.Count != 3 || total.Sum != time.Minute+6*time.Millisecond {
		t.Fatalf("count %d sum %v", total.Count, total.Sum)
	}
	for i, w := range []uint64{1, 2, 2} {
		if got := total.Cumulative(i); got != w {
			t.Errorf("bucket %d: %d, want %d", i, got, w)
		}
	}
}

func TestEmptySnapshotIsZero(t *testing.T) {
	var s Snapshot // the sum of no histogram
	for i := range testBounds.Len() {
		if s.Cumulative(i) != 0 {
			t.Fatalf("bucket %d of an empty snapshot: %d", i, s.Cumulative(i))
		}
	}
}

func TestObserveAllocatesNothing(t *testing.T) {
	h := New(testBounds)
	if n := testing.AllocsPerRun(1000, func() { h.Observe(3 * time.Millisecond) }); n != 0 {
		t.Fatalf("Observe allocates %v times, want 0", n)
	}
}

func TestNewBoundsRejectsDisorder(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bounds []time.Duration
	}{
		{"zero", []time.Duration{0, time.Second}},
		{"decreasing", []time.Duration{time.Second, time.Millisecond}},
		{"repeated", []time.Duration{time.Second, time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			NewBounds(tc.bounds...)
		})
	}
}

func BenchmarkObserve(b *testing.B) {
	h := New(testBounds)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Observe(3 * time.Millisecond)
		}
	})
}
