package admin

import (
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// slow is a limit that never refills during a test: exactly Burst requests pass.
const slow = 0.0001

func TestRateLimit(t *testing.T) {
	a, _ := newAPI(t, func(s *Security) { s.Rate, s.Burst = slow, 3 })
	h := a.Handler()
	own := func(remote string, port int) req {
		return req{target: "/upstream/add?port=" + strconv.Itoa(port), remote: remote}
	}
	for port := 1; port <= 3; port++ {
		check(t, a, h, own("203.0.113.5:1", port), 200)
	}
	check(t, a, h, own("203.0.113.5:1", 4), 429)
	check(t, a, h, own("203.0.113.5:2", 5), 429) // another connection of the same client
	check(t, a, h, req{target: "/upstream/remove?port=1", remote: "203.0.113.5:1"}, 429)
	check(t, a, h, own("203.0.113.6:1", 4), 200) // another client has its own bucket

	// IPv6 clients share a bucket per /64.
	for port := 1; port <= 3; port++ {
		check(t, a, h, own(fmt.Sprintf("[2001:db8:1:2::%d]:1", port), port), 200)
	}
	check(t, a, h, own("[2001:db8:1:2::99]:1", 9), 429)
	check(t, a, h, own("[2001:db8:1:3::1]:1", 9), 200)
}

// TestRateLimitForwarded: behind a trusted proxy the bucket is the forwarded client's, not the
// proxy's, and a client cannot escape its bucket by forging X-Forwarded-For entries.
func TestRateLimitForwarded(t *testing.T) {
	a, _ := newAPI(t, func(s *Security) { s.Rate, s.Burst = slow, 1 })
	a.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	h := a.Handler()
	via := func(xff string, port int) req {
		return req{target: "/upstream/add?port=" + strconv.Itoa(port), remote: "10.0.0.2:1", header: map[string]string{"X-Forwarded-For": xff}}
	}
	check(t, a, h, via("198.51.100.7", 1), 200)
	check(t, a, h, via("1.1.1.1, 198.51.100.7", 2), 429) // forged left-most entry changes nothing
	check(t, a, h, via("198.51.100.8", 1), 200)          // another client behind the same proxy
}

// TestRateLimitOrder: when several rules reject a request, 400 and 403 win over 429, and a
// rejected request costs no token.
func TestRateLimitOrder(t *testing.T) {
	a, _ := newAPI(t, func(s *Security) { s.Rate, s.Burst = slow, 1 })
	h := a.Handler()
	const remote = "203.0.113.5:1"
	check(t, a, h, req{target: "/upstream/add?port=bad", remote: remote}, 400)
	check(t, a, h, req{target: "/upstream/add?" + q("host", "198.51.100.7", "port", "80"), remote: remote}, 403)
	check(t, a, h, req{target: "/upstream/add?port=80", remote: remote}, 200) // the token was still there
	check(t, a, h, req{target: "/upstream/add?port=bad", remote: remote}, 400)
	check(t, a, h, req{target: "/upstream/add?port=%zz", remote: remote}, 400)
	check(t, a, h, req{target: "/upstream/add?" + q("host", "198.51.100.7", "port", "80"), remote: remote}, 403)
	check(t, a, h, req{target: "/upstream/remove?port=81", remote: remote}, 429) // 429 before 404
	check(t, a, h, req{target: "/upstream/add?port=81", remote: remote}, 429)
}

// TestOrder: every pair of rules a request can break at once, answered by the first of 401,
// 400, 403, then 404/429.
func TestOrder(t *testing.T) {
	a, p := newAPI(t, func(s *Security) { s.Token, s.Rate, s.Burst = "t", slow, 1 })
	p.MaxBackends = 1
	h := a.Handler()
	check(t, a, h, req{target: "/upstream/add?" + q("host", "198.51.100.7", "port", "1"), token: "t"}, 200)
	cases := []struct {
		name string
		r    req
		code int
	}{
		{"401 over 400", req{target: "/upstream/add?port=0"}, 401},
		{"401 over 403", req{target: "/upstream/add?" + q("host", "0.0.0.0", "port", "1")}, 401},
		{"400 over 403", req{target: "/upstream/add?" + q("host", "0.0.0.0", "port", "0"), token: "t"}, 400},
		{"403 over 429", req{target: "/upstream/add?" + q("host", "0.0.0.0", "port", "1"), token: "t"}, 403},
		{"429 rate over 404", req{target: "/upstream/remove?" + q("host", "198.51.100.7", "port", "2"), token: "t"}, 429},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { check(t, a, h, c.r, c.code) })
	}
	b, _ := newAPI(t, func(s *Security) { s.Token = "t" })
	check(t, b, b.Handler(), req{target: "/upstream/remove?" + q("host", "198.51.100.7", "port", "2"), token: "t"}, 404)
}

// TestHeartbeatNeverLimited runs the heartbeat use case with the default limit (20/s, burst
// 40): sixty backends behind one client address, each heartbeating once a second, are never
// refused, although sixty requests a second is three times the client's rate. A backend that
// hammers add instead is limited.
func TestHeartbeatNeverLimited(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about three seconds")
	}
	a, p := newAPI(t, func(s *Security) { s.Rate, s.Burst = 20, 40 })
	h := a.Handler()
	const remote, backends = "203.0.113.5:1", 60
	for port := 1; port <= backends; port++ {
		p.Register(pool.Address{Host: "203.0.113.5", Port: port}, 1)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for round := range 3 {
		<-tick.C
		for port := 1; port <= backends; port++ {
			w := req{target: "/upstream/add?port=" + strconv.Itoa(port), remote: remote}.do(t, h)
			if w.Code != 200 {
				t.Fatalf("round %d, backend %d: %d %s", round, port, w.Code, w.Body)
			}
		}
	}
	refused := 0
	for range 100 {
		if (req{target: "/upstream/add?port=1", remote: remote}).do(t, h).Code == 429 {
			refused++
		}
	}
	if refused == 0 {
		t.Errorf("100 back-to-back heartbeats of one backend were never limited")
	}
}

// TestHeartbeatFreeAfterPause: with a one-token bucket already spent, a heartbeat of a known
// backend passes again once heartbeatFree has gone by.
func TestHeartbeatFreeAfterPause(t *testing.T) {
	a, _ := newAPI(t, func(s *Security) { s.Rate, s.Burst = slow, 1 })
	h := a.Handler()
	r := req{target: "/upstream/add?port=80", remote: "203.0.113.5:1"}
	check(t, a, h, r, 200)
	check(t, a, h, req{target: "/upstream/add?port=81", remote: "203.0.113.5:1"}, 429)
	eventually(t, "a free heartbeat", func() bool { return r.do(t, h).Code == 200 })
}

func TestLimiterBounded(t *testing.T) {
	l := newLimiter(slow, 1, 100)
	allow := func(ip netip.Addr) bool { _, ok := l.take(ip); return ok }
	for i := range 1000 {
		allow(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}))
	}
	if n := l.size(); n != 100 {
		t.Errorf("%d buckets, want 100", n)
	}
	// The most recent client is still remembered (and limited); the oldest was forgotten.
	if allow(netip.AddrFrom4([4]byte{198, 51, 3, 231})) {
		t.Errorf("recent client not limited")
	}
	if !allow(netip.AddrFrom4([4]byte{198, 51, 0, 0})) {
		t.Errorf("forgotten client still limited")
	}
}

func TestClientKey(t *testing.T) {
	cases := map[string]string{
		"198.51.100.7":         "198.51.100.7/32",
		"::ffff:198.51.100.7":  "198.51.100.7/32",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"fe80::1%eth0":         "fe80::/64",
	}
	for in, want := range cases {
		if got := clientKey(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("clientKey(%s) = %s, want %s", in, got, want)
		}
	}
}
