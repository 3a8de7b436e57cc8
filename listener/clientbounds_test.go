package listener_test

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/listener/clientlimit"
	"github.com/fulcrumlb/fulcrum/pool"
)

// refusals counts a ClientObserver's calls by reason.
type refusals struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *refusals) ClientRefused(service, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n[reason]++
}

func (r *refusals) get(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[reason]
}

// boundedProxy is a Server with per-client bounds in front of one holding backend.
func boundedProxy(t *testing.T, cfg clientlimit.Config) (*listener.Server, string, *backend, *refusals) {
	t.Helper()
	b := startBackend(t, hold)
	p := &pool.Pool{Logger: quiet}
	if _, err := p.Register(b.addr(), 0); err != nil {
		t.Fatal(err)
	}
	obs := &refusals{n: map[string]int{}}
	srv := &listener.Server{Picker: p, Logger: quiet, DataPlane: planeOf(t), Clients: clientlimit.New(cfg), ClientObserver: obs, Service: "svc"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
	return srv, ln.Addr().String(), b, obs
}

// dialFrom connects to addr from the loopback address from (127.0.0.2 and so on are other
// clients on Linux).
func dialFrom(t *testing.T, from, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot connect from %s (needs the whole 127.0.0.0/8 on loopback): %v", from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// TestMaxConnsPerClient: 50 connections from one address with a bound of 10: 10 served, 40
// closed at once and counted; a second address is unaffected.
func TestMaxConnsPerClient(t *testing.T) {
	eachPlane(t, func(t *testing.T) {
		srv, addr, b, obs := boundedProxy(t, clientlimit.Config{MaxConns: 10})
		var conns []*net.TCPConn
		for range 50 {
			conns = append(conns, dialFrom(t, "127.0.0.1", addr))
		}
		eventually(t, "10 served, 40 refused", func() bool { return b.open() == 10 && obs.get("conns") == 40 })
		closed := 0
		for _, c := range conns {
			if closedWithin(c, 50*time.Millisecond) {
				closed++
			}
		}
		if closed != 40 {
			t.Errorf("%d of 50 closed, want 40", closed)
		}
		other := dialFrom(t, "127.0.0.2", addr)
		eventually(t, "the second address served", func() bool { return b.open() == 11 })
		other.Close()
		for _, c := range conns {
			c.Close()
		}
		eventually(t, "every connection gone", func() bool { return srv.ActiveConns() == 0 && b.open() == 0 })
		if top := srv.Clients.Top(10); len(top) != 0 {
			t.Errorf("clients with open connections after all closed: %v", top)
		}
		if n := srv.Stats().ReleaseBugs.Load(); n != 0 {
			t.Errorf("%d release bugs", n)
		}
	})
}

// TestClientACL: a denied address and one outside the allow list are closed without a dial
// (the backend sees no connection); others are served.
func TestClientACL(t *testing.T) {
	eachPlane(t, func(t *testing.T) {
		allow := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/30")}
		deny := []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
		_, addr, b, obs := boundedProxy(t, clientlimit.Config{Allow: allow, Deny: deny})
		denied := dialFrom(t, "127.0.0.2", addr)
		outside := dialFrom(t, "127.0.0.9", addr)
		for name, c := range map[string]*net.TCPConn{"denied": denied, "outside the allow list": outside} {
			if !closedWithin(c, 5*time.Second) {
				t.Errorf("%s: not closed", name)
			}
		}
		if n := b.accepted(); n != 0 {
			t.Errorf("backend saw %d connections from refused clients", n)
		}
		dialFrom(t, "127.0.0.1", addr)
		eventually(t, "an allowed client served", func() bool { return b.accepted() == 1 })
		if obs.get("acl") != 2 {
			t.Errorf("acl refusals %d, want 2", obs.get("acl"))
		}
	})
}

// TestClientRate: beyond --client-rate's burst, new connections from one address are closed.
func TestClientRate(t *testing.T) {
	eachPlane(t, func(t *testing.T) {
		_, addr, b, obs := boundedProxy(t, clientlimit.Config{Rate: clientlimit.Rate{PerSecond: 0.001, Burst: 5}})
		for range 20 {
			dialFrom(t, "127.0.0.1", addr)
		}
		eventually(t, "5 served, 15 refused", func() bool { return b.accepted() == 5 && obs.get("rate") == 15 })
	})
}
