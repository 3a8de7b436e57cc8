package listener_test

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// TestMaglevKeepsEachSourceOnItsBackend: behind a Maglev pool, clients connecting from many
// loopback source addresses each land on one backend every time (each backend writes its own
// address), and removing a backend moves its clients only.
func TestMaglevKeepsEachSourceOnItsBackend(t *testing.T) {
	naming := func(c *net.TCPConn) { io.WriteString(c, c.LocalAddr().String()) }
	p := &pool.Pool{Policy: pool.Maglev}
	proxy := startProxy(t, p, startBackend(t, naming), startBackend(t, naming), startBackend(t, naming))
	waitMaglevTable(t, p)

	const sources = 200
	first := landings(t, proxy.addr, sources)
	if again := landings(t, proxy.addr, sources); !sameLandings(first, again) {
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
	after := landings(t, proxy.addr, sources)
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
