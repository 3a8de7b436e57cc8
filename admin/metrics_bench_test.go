package admin_test

// What instrumentation costs the data path, measured over real loopback connections through a
// listener.Server:
//
//	go test -run '^$' -bench 'ProxyConnRate|ProxyThroughput' -benchtime 2s -count 5 ./admin
//
// Each benchmark runs with no observer ("none"), with the backends' byte totals only, which
// fulcrum always counts for /upstream/status ("bytes", what --metrics=false leaves), and with
// go-metrics on top ("metrics", the default --metrics=true). Besides wall-clock figures they
// report cpu-ns/op, the process's CPU time per operation.

import (
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/internal/testbed"
	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// opsObservers are the benchmarks' configurations, named as in the results.
func opsObservers(b *testing.B, p *pool.Pool) []struct {
	name string
	obs  listener.Observer
} {
	m, err := admin.NewMetrics(p)
	if err != nil {
		b.Fatal(err)
	}
	return []struct {
		name string
		obs  listener.Observer
	}{
		{"none", nil},
		{"bytes", listener.BackendBytes{}},
		{"metrics", listener.Observers{listener.BackendBytes{}, m}},
	}
}

// BenchmarkProxyConnRate: connections per second, each one byte echoed through the proxy.
func BenchmarkProxyConnRate(b *testing.B) {
	p := &pool.Pool{Logger: quiet}
	if err := p.RegisterStatic(opsEcho(b), 1); err != nil {
		b.Fatal(err)
	}
	for _, cfg := range opsObservers(b, p) {
		b.Run(cfg.name, func(b *testing.B) {
			proxy, _ := opsProxy(b, p, cfg.obs)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := opsCPUTime(b)
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 1)
				for pb.Next() {
					if err := opsOneByte(proxy, buf); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
			b.ReportMetric(float64(opsCPUTime(b)-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

func opsOneByte(proxy string, buf []byte) error {
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(buf); err != nil {
		return err
	}
	_, err = io.ReadFull(c, buf)
	return err
}

// BenchmarkProxyThroughput: bytes per second one way through one proxied connection into a
// backend that discards them; the backend's count of what it received ends the run.
func BenchmarkProxyThroughput(b *testing.B) {
	p := &pool.Pool{Logger: quiet}
	if err := p.RegisterStatic(opsSink(b), 1); err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for _, cfg := range opsObservers(b, p) {
		b.Run(cfg.name, func(b *testing.B) {
			proxy, _ := opsProxy(b, p, cfg.obs)
			c, err := net.Dial("tcp", proxy)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			cpu := opsCPUTime(b)
			for range b.N {
				if _, err := c.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			c.(*net.TCPConn).CloseWrite()
			var got uint64
			if err := binary.Read(c, binary.BigEndian, &got); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(opsCPUTime(b)-cpu)/float64(b.N), "cpu-ns/op")
			if want := uint64(b.N) * uint64(len(chunk)); got != want {
				b.Fatalf("backend received %d bytes, want %d", got, want)
			}
		})
	}
}

// opsCPUTime is the CPU time the process has used, user and system, in nanoseconds. On a
// machine shared with other work it moves less with the load than wall time does; it includes
// the client and backend of the benchmark, which are the same in every configuration.
func opsCPUTime(b testing.TB) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// opsSink is a backend that reads until EOF and answers with how many bytes it read.
func opsSink(t testing.TB) pool.Address {
	t.Helper()
	be := testbed.Serve(t, func(c net.Conn) error {
		n, _ := io.Copy(io.Discard, c)
		return binary.Write(c, binary.BigEndian, uint64(n))
	})
	return opsAddress(t, be.Addr())
}

// BenchmarkObserverPerConnection is the CPU the observers add to one connection with no
// network in the way: Opened, one chunk each way, Closed, Flush.
func BenchmarkObserverPerConnection(b *testing.B) {
	p, be := acquiredStatic(b)
	for _, cfg := range opsObservers(b, p)[1:] {
		b.Run(cfg.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c := &listener.ConnInfo{Backend: be, Start: time.Now()}
					m := cfg.obs.Opened(c)
					m.Moved(true, 1<<20)
					m.Moved(false, 1<<20)
					cfg.obs.Closed(c, listener.Traffic{Up: 1 << 20, Down: 1 << 20})
					if m != nil {
						m.Flush() // as the data path does, once, after Closed
					}
				}
			})
		})
	}
}

// BenchmarkObserverMetrics is what Metrics alone costs one connection, called as the data path
// calls it (Opened, a chunk each way, Closed, Flush) on a backend whose series exist; the
// ConnInfo is the connection's, reused as a Server's connection holds its own:
//
//	go test -run '^$' -bench ObserverMetrics -benchmem -count 5 ./admin
func BenchmarkObserverMetrics(b *testing.B) {
	p, be := acquiredStatic(b)
	m, err := admin.NewMetrics(p)
	if err != nil {
		b.Fatal(err)
	}
	var obs listener.Observer = m
	b.Run("serial", func(b *testing.B) {
		c := &listener.ConnInfo{Backend: be}
		b.ReportAllocs()
		for b.Loop() {
			c.Start = time.Now()
			benchConnection(obs, c)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			c := &listener.ConnInfo{Backend: be}
			for pb.Next() {
				c.Start = time.Now()
				benchConnection(obs, c)
			}
		})
	})
}

func benchConnection(obs listener.Observer, c *listener.ConnInfo) {
	m := obs.Opened(c)
	m.Moved(true, 1<<20)
	m.Moved(false, 1<<20)
	obs.Closed(c, listener.Traffic{Up: 1 << 20, Down: 1 << 20})
	m.Flush()
}

// BenchmarkMetrics50kBackends is the many-backends case: 50,000 backends registered by
// heartbeat, each with its series created. "heartbeat" is what Metrics adds to one heartbeat of
// a known backend; "scrape" is one GET /metrics, whose size it reports (bytes/scrape), and
// "scrape-gzip" the same asked with Accept-Encoding: gzip, as Prometheus asks;
// "heap" reports the heap the backends' series hold (B/backend), measured once.
//
//	go test -run '^$' -bench Metrics50kBackends -benchtime 5x ./admin
func BenchmarkMetrics50kBackends(b *testing.B) {
	const n = 50_000
	p := &pool.Pool{Logger: quiet}
	keys := make([]string, n)
	for i := range n {
		a, err := pool.ParseAddress("127.0.0.1:" + strconv.Itoa(10000+i))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Register(a, 1); err != nil {
			b.Fatal(err)
		}
		keys[i] = a.Key()
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, err := admin.NewMetrics(p)
	if err != nil {
		b.Fatal(err)
	}
	for _, k := range keys {
		m.Heartbeat("", k)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.Run("heap", func(b *testing.B) {
		for b.Loop() {
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/backend")
	})
	b.Run("heartbeat", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			m.Heartbeat("", keys[i%n])
			i++
		}
	})
	for _, enc := range []struct{ name, header string }{{"scrape", ""}, {"scrape-gzip", "gzip"}} {
		b.Run(enc.name, func(b *testing.B) {
			b.ReportAllocs()
			var size int
			for b.Loop() {
				w := &countingWriter{header: http.Header{}}
				r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
				if enc.header != "" {
					r.Header.Set("Accept-Encoding", enc.header)
				}
				m.ServeHTTP(w, r)
				size = w.n
			}
			b.ReportMetric(float64(size), "bytes/scrape")
		})
	}
}

// countingWriter is a ResponseWriter that only counts the body.
type countingWriter struct {
	header http.Header
	n      int
}

func (w *countingWriter) Header() http.Header         { return w.header }
func (w *countingWriter) WriteHeader(int)             {}
func (w *countingWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// acquiredStatic is a pool with one static backend, acquired once: the backend a benchmark's
// connections are counted on.
func acquiredStatic(b *testing.B) (*pool.Pool, *pool.Backend) {
	b.Helper()
	p := &pool.Pool{Logger: quiet}
	addr, err := pool.ParseAddress("127.0.0.1:9")
	if err != nil {
		b.Fatal(err)
	}
	if err := p.RegisterStatic(addr, 1); err != nil {
		b.Fatal(err)
	}
	be, err := p.Acquire(netip.Addr{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return p, be
}
