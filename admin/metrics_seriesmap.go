package admin

import (
	"sync"
	"sync/atomic"
)

// seriesMap is the backends' series by key: read by every connection and heartbeat without a
// lock, written once a backend. It is a plain Go map published by an atomic pointer and never
// written after, beside a locked map that holds it all again with the newest entries; after
// as many lookups missed the first as the second holds, the second is published in its
// place (the way sync.Map worked before Go 1.24).
//
// Why not sync.Map: it is now a hash trie, a node per entry and a boxed key, all pointers.
// With 50,000 backends, the GC trace of a heartbeat load showed that heap costing several
// times as much to mark per megabyte as the rest of the process, about 2 µs of the 3.5 µs
// more CPU a heartbeat took with metrics on. A map's entries lie in a few large arrays.
type seriesMap struct {
	read atomic.Pointer[map[seriesKey]*backendSeries] // published whole, never written after

	mu     sync.Mutex                   // guards dirty and misses
	dirty  map[seriesKey]*backendSeries // nil, or everything in read and the newer entries
	misses int                          // lookups that missed read since dirty was made
}

// load returns the series of k, if stored.
func (s *seriesMap) load(k seriesKey) (*backendSeries, bool) {
	if r := s.read.Load(); r != nil {
		if bs, ok := (*r)[k]; ok {
			return bs, true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dirty == nil { // published meanwhile, or k is not there
		bs, ok := (*s.readMap())[k]
		return bs, ok
	}
	bs, ok := s.dirty[k]
	if s.misses++; s.misses >= len(s.dirty) {
		s.publishLocked()
	}
	return bs, ok
}

// store adds the series of k, which is not stored yet.
func (s *seriesMap) store(k seriesKey, bs *backendSeries) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dirty == nil {
		r := *s.readMap()
		s.dirty = make(map[seriesKey]*backendSeries, len(r)+1)
		for k, v := range r {
			s.dirty[k] = v
		}
	}
	s.dirty[k] = bs
}

// each calls f for every stored series, in no order, until f returns false.
func (s *seriesMap) each(f func(seriesKey, *backendSeries) bool) {
	s.mu.Lock()
	if s.dirty != nil {
		s.publishLocked()
	}
	r := s.readMap()
	s.mu.Unlock()
	for k, v := range *r {
		if !f(k, v) {
			return
		}
	}
}

// publishLocked makes dirty the map that readers read; s.mu is held.
func (s *seriesMap) publishLocked() {
	d := s.dirty
	s.read.Store(&d)
	s.dirty, s.misses = nil, 0
}

// readMap is the published map, empty before the first store.
func (s *seriesMap) readMap() *map[seriesKey]*backendSeries {
	if r := s.read.Load(); r != nil {
		return r
	}
	return &map[seriesKey]*backendSeries{}
}
