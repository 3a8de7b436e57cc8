package bench

import (
	"context"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/testbed"
)

// runLightT runs the light client against addr for d and returns what it did.
func runLightT(t *testing.T, kind clientKind, addr string, conns, loops int, d, grace time.Duration) load {
	t.Helper()
	var ops atomic.Int64
	end := time.Now().Add(d)
	l, err := runLight(context.Background(), lightLoad{kind: kind, addr: addr, conns: conns, loops: loops,
		end: end, giveUp: end.Add(grace), ops: &ops})
	if err != nil {
		t.Fatal(err)
	}
	if ops.Load() != int64(len(l.samples)) {
		t.Errorf("progress counted %d operations, samples %d", ops.Load(), len(l.samples))
	}
	return l
}

// openFDs counts this process's descriptors. Tests compare it with <=: what an earlier test
// left closing may close meanwhile, but a descriptor the load leaked never does.
func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// quiet waits until the backends hold no connection.
func quiet(t *testing.T, bs *Servers) {
	t.Helper()
	eventually(t, "the backends to close every connection", func() bool {
		st, _ := bs.Stats()
		for _, s := range st {
			if s.Active != 0 {
				return false
			}
		}
		return true
	})
}

// TestLightClient runs both kinds against the bench backends on one and on two threads:
// every transaction is one connection the backends accepted, every ping-pong connection
// stays one connection, nothing fails and no descriptor is left open.
func TestLightClient(t *testing.T) {
	for _, tc := range []struct {
		name         string
		kind         clientKind
		conns, loops int
	}{
		{"transact", transact, 3, 1},
		{"transact on two threads", transact, 5, 2},
		{"ping-pong", pingPong, 4, 1},
		{"ping-pong on two threads", pingPong, 3, 2},
		{"one ping-pong connection", pingPong, 1, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := startBackends(t, 2)
			fds := openFDs(t)
			l := runLightT(t, tc.kind, bs.Addrs()[0], tc.conns, tc.loops, 300*time.Millisecond, 30*time.Second)
			if l.errs != 0 || len(l.samples) == 0 || l.conns != tc.conns {
				t.Fatalf("%d samples, %d errors (first %v), conns %d", len(l.samples), l.errs, l.firstErr, l.conns)
			}
			quiet(t, bs)
			st, _ := bs.Stats()
			want := int64(tc.conns)
			if tc.kind == transact {
				want = int64(len(l.samples))
			}
			if st[0].Accepted != want {
				t.Errorf("backend accepted %d connections, want %d", st[0].Accepted, want)
			}
			eventually(t, "the descriptors of the load to close", func() bool { return openFDs(t) <= fds })
		})
	}
}

// serveOnce accepts connections on a fresh loopback listener and hands each to handle.
func serveOnce(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	return testbed.Serve(t, func(c net.Conn) error { handle(c); return nil }).Addr()
}

// TestLightClientFailures: every way a server can let the client down is counted as a
// failure with a reason, and the load still ends.
func TestLightClientFailures(t *testing.T) {
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := gone.Addr().String()
	gone.Close()
	short := serveOnce(t, func(c net.Conn) {
		io.ReadFull(c, make([]byte, requestSize))
		c.Write(make([]byte, 10))
	})
	long := serveOnce(t, func(c net.Conn) {
		io.ReadFull(c, make([]byte, requestSize))
		c.Write(make([]byte, replySize+1))
	})
	shortEcho := serveOnce(t, func(c net.Conn) {
		io.ReadFull(c, make([]byte, msgSize))
		c.Write(make([]byte, 10))
	})
	silent := serveOnce(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	for _, tc := range []struct {
		name, addr, reason string
		kind               clientKind
	}{
		{"refused", refused, "refused", transact},
		{"refused ping-pong", refused, "refused", pingPong},
		{"short reply", short, "closed by peer after 10 of 64", transact},
		{"long reply", long, "65 bytes, want 64", transact},
		{"closed mid ping-pong", shortEcho, "closed by peer after 10 of 64", pingPong},
		{"no reply", silent, "no reply", pingPong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fds := openFDs(t)
			l := runLightT(t, tc.kind, tc.addr, 2, 1, 100*time.Millisecond, 200*time.Millisecond)
			if l.errs == 0 || len(l.samples) != 0 || l.firstErr == nil || !strings.Contains(l.firstErr.Error(), tc.reason) {
				t.Fatalf("%d samples, %d errors, first %v; want only failures saying %q", len(l.samples), l.errs, l.firstErr, tc.reason)
			}
			eventually(t, "the descriptors of the load (both sides) to close", func() bool { return openFDs(t) <= fds })
		})
	}
}

func TestLightClientBadAddress(t *testing.T) {
	if _, err := runLight(context.Background(), lightLoad{addr: "localhost:80", conns: 1}); err == nil {
		t.Fatal("a host name was accepted; the raw client needs an IP address")
	}
}
