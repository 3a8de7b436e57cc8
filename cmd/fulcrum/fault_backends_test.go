package main

// Fault tests with bad backends: each keeps healthy backends' clients free of errors, ends with
// every count at 0, and accounts for every failed client.

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestFault_ResetBackend: a backend that accepts and then resets. Its clients fail (the bytes
// have nowhere to go) and nobody else's do.
func TestFault_ResetBackend(t *testing.T) { eachPlane(t, testFault_ResetBackend) }

func testFault_ResetBackend(t *testing.T) {
	good1, good2 := startBackend(t, serveXfer), startBackend(t, serveXfer)
	bad := startBackend(t, resetHandler)
	b := startBalancer(t, "--backend", good1.Addr(), "--backend", good2.Addr(), "--backend", bad.Addr())

	r := runClients(b.listen, 8, 25, 32<<10, 32<<10)
	settle(t, b)
	good1.Stop() // waits for the handlers, so served is final
	good2.Stop()
	bad.Stop()

	st := status(t, b.admn)
	healthy := int64(st[good1.Addr()].TotalConns + st[good2.Addr()].TotalConns)
	t.Logf("reset backend: %d round trips ok, %d failed (the reset backend took %d, accepted %d)",
		r.ok.Load(), r.failed.Load(), st[bad.Addr()].TotalConns, bad.Accepted())
	// Every client a healthy backend took succeeded. (A reset that lands before the balancer's
	// connect completes is a failed dial: that client is retried on a healthy backend.)
	if r.ok.Load() != healthy || good1.Served()+good2.Served() != healthy {
		t.Fatalf("%d ok, healthy backends routed %d and served %d: a healthy backend's client failed (first error: %v)",
			r.ok.Load(), healthy, good1.Served()+good2.Served(), r.firstErr)
	}
	if r.failed.Load() > bad.Accepted() || r.ok.Load()+r.failed.Load() != 200 {
		t.Fatalf("%d clients failed, %d ok, the reset backend accepted %d", r.failed.Load(), r.ok.Load(), bad.Accepted())
	}
}

// blackhole is a listener that never completes another handshake: backlog 0, never accepted,
// its queue filled by one held connection. SYNs to it are dropped, so dials time out.
func blackhole(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	sa := &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if err := syscall.Bind(fd, sa); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "blackhole")
	t.Cleanup(func() { f.Close() })
	lsa, _ := syscall.Getsockname(fd)
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: lsa.(*syscall.SockaddrInet4).Port}).String()
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return addr // the queue is full: this SYN went unanswered
			}
			t.Fatalf("filling the blackhole's backlog: %v", err)
		}
		held = append(held, c)
		if i > 16 {
			t.Fatalf("blackhole's backlog never filled")
		}
	}
}

// TestFault_BlackholeBackend: a backend that never answers the SYN costs its would-be clients
// a connect timeout and a retry, never an error.
func TestFault_BlackholeBackend(t *testing.T) { eachPlane(t, testFault_BlackholeBackend) }

func testFault_BlackholeBackend(t *testing.T) {
	good := startBackend(t, serveXfer)
	hole := blackhole(t)
	b := startBalancer(t, "--backend", good.Addr(), "--backend", hole, "--connect-timeout", "250ms", "--retries", "2")

	r := runClients(b.listen, 6, 10, 16<<10, 16<<10)
	settle(t, b)
	good.Stop()
	st := status(t, b.admn)
	t.Logf("blackhole: %d round trips ok, %d failed; dials tried on the blackhole: %d", r.ok.Load(), r.failed.Load(), st[hole].TotalConns)
	if r.failed.Load() != 0 {
		t.Fatalf("%d clients failed (first: %v)", r.failed.Load(), r.firstErr)
	}
	if got := good.Served(); got != 60 {
		t.Fatalf("the healthy backend served %d of 60", got)
	}
}

// TestFault_KilledMidStream: a backend process killed with SIGKILL while carrying connections.
// Exactly its clients fail; the other backend's held clients finish with every byte; later
// clients all succeed (the dead one refuses, the retry goes on); every count returns to 0.
func TestFault_KilledMidStream(t *testing.T) { eachPlane(t, testFault_KilledMidStream) }

func testFault_KilledMidStream(t *testing.T) {
	healthy := startChildBackends(t, 1)
	victim := startChildBackends(t, 1)
	b := startBalancer(t, "--backend", healthy.addrs[0], "--backend", victim.addrs[0], "--retries", "2")

	const held = 20
	clients := halfSentTransfers(t, b.listen, held)
	eventually(t, 10*time.Second, "20 connections held", func() bool { return activeConns(t, b.admn) == held })
	onVictim := status(t, b.admn)[victim.addrs[0]].ConnCount
	victim.Kill()

	var r clientRun
	var wg sync.WaitGroup
	for _, x := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); r.record(x.finish()) }()
	}
	wg.Wait()
	after := runClients(b.listen, 4, 10, 64<<10, 64<<10)
	settle(t, b)
	t.Logf("killed mid-stream: %d held (%d on the victim): %d finished, %d failed; afterwards %d of 40 ok",
		held, onVictim, r.ok.Load(), r.failed.Load(), after.ok.Load())
	if r.failed.Load() != onVictim || r.ok.Load() != held-onVictim {
		t.Fatalf("%d failed, want exactly the victim's %d (first error: %v)", r.failed.Load(), onVictim, r.firstErr)
	}
	if after.failed.Load() != 0 {
		t.Fatalf("%d clients failed after the kill (first: %v)", after.failed.Load(), after.firstErr)
	}
}

// flapper is a backend that listens for a while, then not, on the same port.
type flapper struct {
	addr             string
	accepted, served int64 // guarded by mu
	closes           int64 // times the listener closed; guarded by mu
	mu               sync.Mutex
	stop             chan struct{}
	done             sync.WaitGroup
	up, down         time.Duration
	haltOnce         sync.Once
}

func startFlapper(t *testing.T, up, down time.Duration) *flapper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &flapper{addr: ln.Addr().String(), stop: make(chan struct{}), up: up, down: down}
	f.done.Add(1)
	go f.run(ln)
	t.Cleanup(f.halt)
	return f
}

// halt stops flapping and waits for every handler; safe twice.
func (f *flapper) halt() {
	f.haltOnce.Do(func() { close(f.stop) })
	f.done.Wait()
}

func (f *flapper) run(ln net.Listener) {
	defer f.done.Done()
	for {
		f.serveFor(ln, f.up)
		select {
		case <-f.stop:
			return
		case <-time.After(f.down):
		}
		var err error
		if ln, err = net.Listen("tcp", f.addr); err != nil {
			panic(err) // the port was ours a moment ago
		}
	}
}

// serveFor accepts on ln for d, then closes it; the connections accepted run on.
func (f *flapper) serveFor(ln net.Listener, d time.Duration) {
	timer := time.AfterFunc(d, func() { ln.Close() })
	defer timer.Stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			ln.Close()
			f.mu.Lock()
			f.closes++
			f.mu.Unlock()
			return
		}
		f.mu.Lock()
		f.accepted++
		f.mu.Unlock()
		f.done.Add(1)
		go func() {
			defer f.done.Done()
			if serveXfer(c) == nil {
				f.mu.Lock()
				f.served++
				f.mu.Unlock()
			}
		}()
	}
}

// TestFault_FlappingBackend: a backend up 300 ms, down 300 ms, for about 3 s of traffic. A
// client may fail only when the balancer reached the flapper just as it closed its listener
// (the kernel resets connections still queued there, before any accept). Every connection a
// backend accepted completes with every byte checked, and every client that fails is one that
// no backend served.
func TestFault_FlappingBackend(t *testing.T) { eachPlane(t, testFault_FlappingBackend) }

func testFault_FlappingBackend(t *testing.T) {
	good := startBackend(t, serveXfer)
	flap := startFlapper(t, 300*time.Millisecond, 300*time.Millisecond)
	b := startBalancer(t, "--backend", good.Addr(), "--backend", flap.addr, "--retries", "2")

	var r clientRun
	var wg sync.WaitGroup
	end := time.Now().Add(3 * time.Second)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				r.record(xferRoundTrip(b.listen, 16<<10, 16<<10))
			}
		}()
	}
	wg.Wait()
	settle(t, b)
	good.Stop()
	flap.halt()
	flap.mu.Lock()
	defer flap.mu.Unlock()
	t.Logf("flapping: %d round trips ok, %d failed (reset in the flapper's backlog as it closed); the flapper served %d of %d accepted, the healthy one %d of %d",
		r.ok.Load(), r.failed.Load(), flap.served, flap.accepted, good.Served(), good.Accepted())
	if flap.served != flap.accepted || good.Served() != good.Accepted() {
		t.Fatal("a backend accepted a connection it could not serve in full")
	}
	if r.ok.Load() != good.Served()+flap.served {
		t.Fatalf("%d clients ok, backends served %d: a served client failed (first: %v)", r.ok.Load(), good.Served()+flap.served, r.firstErr)
	}
	// Each close can reset at most the connections in flight then: one per client loop.
	if r.ok.Load() < 20 || r.failed.Load() > 4*flap.closes {
		t.Fatalf("%d ok, %d failed over %d closes: more lost than the closes explain", r.ok.Load(), r.failed.Load(), flap.closes)
	}
}

// TestFault_PassiveHealthStopsAfterFirstFailure: after one failed dial (refused, or timed out
// on a blackhole), a backend gets no new connection until its backoff (1 s) ends. Needs the
// passive health checks; skipped without them.
func TestFault_PassiveHealthStopsAfterFirstFailure(t *testing.T) {
	eachPlane(t, testFault_PassiveHealthStopsAfterFirstFailure)
}

func testFault_PassiveHealthStopsAfterFirstFailure(t *testing.T) {
	needBinary(t)
	for _, tc := range []struct {
		name string
		bad  func(t *testing.T) string
	}{
		{"refused", resFreeAddr},
		{"blackhole", blackhole},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good := startBackend(t, serveXfer)
			bad := tc.bad(t)
			b := startBalancer(t, "--backend", good.Addr(), "--backend", bad, "--connect-timeout", "250ms",
				"--health-interval", "0")
			start := time.Now()
			r := runClients(b.listen, 1, 30, 1<<10, 1<<10)
			elapsed := time.Since(start)
			tried := status(t, b.admn)[bad].TotalConns
			t.Logf("%s: 30 sequential clients in %v, %d ok; dials tried on the bad backend: %d", tc.name, elapsed, r.ok.Load(), tried)
			if r.failed.Load() != 0 {
				t.Fatalf("%d clients failed (first: %v)", r.failed.Load(), r.firstErr)
			}
			// One dial per backoff period at most: 1 s, then 2 s, 4 s...
			if limit := 1 + uint64(elapsed/time.Second); tried > limit {
				t.Fatalf("the bad backend was tried %d times in %v; want at most %d", tried, elapsed, limit)
			}
			if tried == 0 {
				t.Fatal("the bad backend was never tried: the test proved nothing")
			}
		})
	}
}
