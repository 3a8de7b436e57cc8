package admin

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// TestSeriesMap: readers that run beside a writer find every series stored before they
// looked, and each visits every stored series once, whatever was published when.
func TestSeriesMap(t *testing.T) {
	var s seriesMap
	if _, ok := s.load(seriesKey{"default", "x"}); ok {
		t.Fatal("an empty map found a series")
	}
	const n = 2000
	keys := make([]seriesKey, n)
	series := make([]*backendSeries, n)
	for i := range n {
		keys[i] = seriesKey{"default", "127.0.0.1:" + strconv.Itoa(i)}
		series[i] = new(backendSeries)
	}
	var done atomic.Int64 // series stored so far, in the order of keys
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the writer
		defer wg.Done()
		for i := range n {
			s.store(keys[i], series[i])
			done.Add(1)
		}
	}()
	for r := range 2 { // readers: every series stored before a lookup began is found
		wg.Add(1)
		go func() {
			defer wg.Done()
			for step := 0; ; step++ {
				d := int(done.Load())
				if d == 0 {
					continue
				}
				for _, j := range []int{d - 1, (step * (r + 7)) % d} {
					if bs, ok := s.load(keys[j]); !ok || bs != series[j] {
						t.Errorf("%v: found %v, %v", keys[j], bs, ok)
						return
					}
				}
				if d == n {
					return
				}
			}
		}()
	}
	wg.Wait()
	seen := map[seriesKey]int{}
	s.each(func(k seriesKey, bs *backendSeries) bool {
		seen[k]++
		return true
	})
	if len(seen) != n {
		t.Errorf("each visited %d series, want %d", len(seen), n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("%v visited %d times", k, c)
		}
	}
	s.store(seriesKey{"other", "a"}, new(backendSeries)) // after a publish: copied anew
	if _, ok := s.load(keys[0]); !ok {
		t.Error("a series stored before the last publish was lost")
	}
	if _, ok := s.load(seriesKey{"other", "a"}); !ok {
		t.Error("a series stored after the last publish was not found")
	}
}
