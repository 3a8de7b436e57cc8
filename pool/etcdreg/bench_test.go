package etcdreg

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
	"github.com/fulcrumlb/fulcrum/pool/etcdreg/etcdtest"
)

// benchBackends is how many backends the heartbeat benchmark renews, spread over the stores.
const benchBackends = 1000

// BenchmarkHeartbeat measures the renewals per second one 3-member cluster takes from 1, 2
// and 3 instances (Stores, each with its own connection and keep-alive stream), every
// heartbeat a renewal of a registered backend, many in flight at once.
func BenchmarkHeartbeat(b *testing.B) {
	c := etcdtest.Start(b, 3)
	for _, n := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			prefix := fmt.Sprintf("/bench%d", n)
			stores := make([]*Store, n)
			for i := range stores {
				stores[i] = openStore(b, c, prefix, 30*time.Second)
			}
			hps := backendsOf(benchBackends, 10000)
			for i, hp := range hps {
				beat(b, stores[i%n], "web", hp, 1)
			}
			var next atomic.Int64
			b.SetParallelism(32) // 64 heartbeats in flight on 2 cores
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(next.Add(1))
					if _, err := stores[i%n].Register(context.Background(), "web", hps[i%len(hps)], netip.Addr{}, 0); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "heartbeats/s")
		})
	}
}

// signalSink applies what it receives to a local pool through a Mirror and tells, for each
// backend it is waiting for, when it became routable there.
type signalSink struct {
	mirror  *Mirror
	mu      sync.Mutex
	waiting map[string]chan time.Time // hostport → told the arrival time once
}

func (s *signalSink) expect(hostport string) chan time.Time {
	ch := make(chan time.Time, 1)
	s.mu.Lock()
	s.waiting[hostport] = ch
	s.mu.Unlock()
	return ch
}

func (s *signalSink) Resync(all []Entry)              { s.mirror.Resync(all) }
func (s *signalSink) Delete(service, hostport string) { s.mirror.Delete(service, hostport) }
func (s *signalSink) Upsert(e Entry) {
	s.mirror.Upsert(e)
	if st, ok := s.mirror.Pools[e.Service].Lookup(e.HostPort); !ok || st.State != pool.StateUp {
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.waiting[e.HostPort]; ok {
		ch <- now
		delete(s.waiting, e.HostPort)
	}
}

// BenchmarkPropagation measures how long a new backend's first heartbeat at instance A takes
// to become routable in instance B's pool, from the call's start: p50 and p99 over b.N
// backends (run it with -benchtime=500x or so).
func BenchmarkPropagation(b *testing.B) {
	c := etcdtest.Start(b, 3)
	a, other := openStore(b, c, "/prop", 30*time.Second), openStore(b, c, "/prop", 30*time.Second)
	sk := &signalSink{waiting: map[string]chan time.Time{},
		mirror: &Mirror{Pools: map[string]*pool.Pool{"web": {Logger: quiet}}, Logger: quiet}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		other.Watch(ctx, sk)
	}()
	defer func() { cancel(); <-done }()
	delays := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		hp := fmt.Sprintf("127.0.0.%d:%d", 1+i/60000, 1+i%60000)
		arrived := sk.expect(hp)
		start := time.Now()
		beat(b, a, "web", hp, 1)
		select {
		case at := <-arrived:
			delays = append(delays, at.Sub(start))
		case <-time.After(10 * time.Second):
			b.Fatalf("%s never reached the other instance", hp)
		}
	}
	slices.Sort(delays)
	b.ReportMetric(float64(delays[len(delays)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(delays[len(delays)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkMemoryPerBackend measures the heap and goroutines the registry itself holds per
// registered backend: one Store that heartbeats b.N backends and watches them into a sink
// that keeps nothing (the pool's own cost per backend is not counted).
func BenchmarkMemoryPerBackend(b *testing.B) {
	c := etcdtest.Start(b, 3)
	goroutines := runtime.NumGoroutine()
	heap := liveHeap()
	st := openStore(b, c, fmt.Sprintf("/mem%d", b.N), 5*time.Minute)
	sk := &countingSink{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.Watch(ctx, sk)
	}()
	defer func() { cancel(); <-done }()
	registerMany(b, st, b.N)
	waitFor(b, time.Minute, "every backend watched", func() bool { return sk.n.Load() >= int64(b.N) })
	b.StopTimer()
	perBackend := float64(liveHeap()-heap) / float64(b.N)
	b.ReportMetric(perBackend, "heap-B/backend")
	b.ReportMetric(float64(runtime.NumGoroutine()-goroutines), "goroutines")
}

type countingSink struct{ n atomic.Int64 }

func (s *countingSink) Resync(all []Entry)    { s.n.Add(int64(len(all))) }
func (s *countingSink) Upsert(Entry)          { s.n.Add(1) }
func (s *countingSink) Delete(string, string) {}

// registerMany registers n backends from 32 goroutines.
func registerMany(b *testing.B, st *Store, n int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				hp := fmt.Sprintf("127.0.%d.%d:%d", i/60000/250, i/60000%250, 1+i%60000)
				if _, err := st.Register(context.Background(), "web", hp, netip.Addr{}, 1); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
