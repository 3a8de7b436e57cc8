package listener_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// TestMaglevKeepsEachSourceOnItsBackend: behind a Maglev pool, clients connecting from many
// loopback source addresses each land on one backend every time, and removing a backend moves
// its clients only.
func TestMaglevKeepsEachSourceOnItsBackend(t *testing.T) {
	p := &pool.Pool{Policy: pool.Maglev, Logger: slog.New(slog.DiscardHandler)}
	for range 3 {
		if _, err := p.Register(startNamingBackend(t), 1); err != nil {
			t.Fatal(err)
		}
	}
	proxy := startMaglevProxy(t, p)
	waitMaglevTable(t, p)

	const sources = 200
	first := landings(t, proxy, sources)
	if again := landings(t, proxy, sources); !sameLandings(first, again) {
		t.Fatal("a source landed on another backend with membership unchanged")
	}
	perBackend := map[string]int{}
	for _, k := range first {
		perBackend[k]++
	}
	if len(perBackend) != 3 {
		t.Fatalf("%d sources landed on %d of 3 backends: %v", sources, len(perBackend), perBackend)
	}

	gone := first[0]
	if err := p.Deregister(gone); err != nil {
		t.Fatal(err)
	}
	waitMaglevTable(t, p)
	after := landings(t, proxy, sources)
	moved, others := 0, 0
	for i := range first {
		switch {
		case after[i] == gone:
			t.Fatalf("source %d still sent to removed %s", i, gone)
		case first[i] != gone:
			others++
			if after[i] != first[i] {
				moved++
			}
		}
	}
	t.Logf("removing %s moved %d of the other backends' %d sources", gone, moved, others)
	if moved > others/50 {
		t.Fatalf("removing one of 3 backends moved %d of the others' %d sources", moved, others)
	}
}

// startNamingBackend starts a loopback server that writes its own address to each connection
// and closes it; the server stops when the test ends.
func startNamingBackend(t *testing.T) pool.Address {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, c.LocalAddr().String())
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return pool.Address{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port}
}

// startMaglevProxy serves p on a loopback port until the test ends, and returns its address.
func startMaglevProxy(t *testing.T, p *pool.Pool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &listener.Server{Picker: p, Logger: slog.New(slog.DiscardHandler)}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, listener.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		for _, s := range p.Snapshot() {
			if s.Active != 0 {
				t.Errorf("%s: %d connections counted after shutdown", s.Key, s.Active)
			}
		}
	})
	return ln.Addr().String()
}

func waitMaglevTable(t *testing.T, p *pool.Pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.WaitTable(ctx); err != nil {
		t.Fatal(err)
	}
}

// landings connects once from each of n loopback sources, 127.1.0.1 upwards, and returns the
// backend each one reached.
func landings(t *testing.T, proxy string, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		src := net.IPv4(127, 1, byte((i+1)>>8), byte(i+1))
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", proxy)
		if err != nil {
			t.Fatalf("dial from %s: %v", src, err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		name, err := io.ReadAll(c)
		c.Close()
		if err != nil || len(name) == 0 {
			t.Fatalf("source %s: read %q, %v", src, name, err)
		}
		out[i] = string(name)
	}
	return out
}

func sameLandings(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}
