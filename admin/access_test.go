package admin

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

func TestAddressOnlyRule(t *testing.T) {
	const remote = "203.0.113.5:1000"
	cases := []struct {
		name   string
		r      req
		code   int
		server string // the key registered, for 200
	}{
		{"empty host is the caller", req{target: "/upstream/add?port=8080", remote: remote}, 200, "203.0.113.5:8080"},
		{"own address", req{target: "/upstream/add?" + q("host", "203.0.113.5", "port", "8080"), remote: remote}, 200, "203.0.113.5:8080"},
		{"own address mapped", req{target: "/upstream/add?" + q("host", "::ffff:203.0.113.5", "port", "8080"), remote: remote}, 200, "203.0.113.5:8080"},
		{"own address, peer mapped", req{target: "/upstream/add?port=8080", remote: "[::ffff:203.0.113.5]:1000"}, 200, "203.0.113.5:8080"},
		{"own IPv6 address", req{target: "/upstream/add?" + q("host", "[2001:db8::5]", "port", "8080"), remote: "[2001:db8::5]:1000"}, 200, "[2001:db8::5]:8080"},
		{"foreign IP", req{target: "/upstream/add?" + q("host", "198.51.100.7", "port", "8080"), remote: remote}, 403, ""},
		{"neighbour in same /64", req{target: "/upstream/add?" + q("host", "2001:db8::6", "port", "8080"), remote: "[2001:db8::5]:1000"}, 403, ""},
		{"foreign name", req{target: "/upstream/add?" + q("host", "example.com", "port", "8080"), remote: remote}, 403, ""},
		{"loopback as host", req{target: "/upstream/add?" + q("host", "127.0.0.1", "port", "22"), remote: remote}, 403, ""},
		{"foreign remove", req{target: "/upstream/remove?" + q("host", "198.51.100.7", "port", "8080"), remote: remote}, 403, ""},
		{"foreign in POST body", req{method: "POST", target: "/upstream/add", body: q("host", "198.51.100.7", "port", "8080"), remote: remote}, 403, ""},
		{"operator on loopback, any host", req{target: "/upstream/add?" + q("host", "198.51.100.7", "port", "8080")}, 200, "198.51.100.7:8080"},
		{"operator on ::1, any host", req{target: "/upstream/add?" + q("host", "198.51.100.7", "port", "8080"), remote: "[::1]:1000"}, 200, "198.51.100.7:8080"},
		{"operator, empty host", req{target: "/upstream/add?port=8080"}, 200, "127.0.0.1:8080"},
		{"400 before 403", req{target: "/upstream/add?" + q("host", "198.51.100.7", "port", "0"), remote: remote}, 400, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, _ := newAPI(t, nil)
			reply := check(t, a, a.Handler(), c.r, c.code)
			if c.code == 200 && reply["server"] != c.server {
				t.Errorf("server %v, want %s", reply["server"], c.server)
			}
		})
	}
}

// TestForeignRemoveKeepsBackend: a remote caller cannot remove what an operator registered.
func TestForeignRemoveKeepsBackend(t *testing.T) {
	a, p := newAPI(t, nil)
	h := a.Handler()
	check(t, a, h, req{target: "/upstream/add?" + q("host", "198.51.100.7", "port", "8080")}, 200)
	check(t, a, h, req{target: "/upstream/remove?" + q("host", "198.51.100.7", "port", "8080"), remote: "203.0.113.5:1"}, 403)
	if p.Len() != 1 {
		t.Fatalf("backend gone")
	}
}

func TestForwardedFor(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8")}
	xff := func(v string) map[string]string { return map[string]string{"X-Forwarded-For": v} }
	cases := []struct {
		name   string
		r      req
		code   int
		server string
	}{
		{"untrusted peer: XFF ignored", req{target: "/upstream/add?port=80", remote: "203.0.113.5:1", header: xff("198.51.100.7")}, 200, "203.0.113.5:80"},
		{"untrusted peer spoofs loopback", req{target: "/upstream/add?" + q("host", "198.51.100.9", "port", "80"), remote: "203.0.113.5:1", header: xff("127.0.0.1")}, 403, ""},
		{"untrusted peer spoofs its target", req{target: "/upstream/add?" + q("host", "198.51.100.9", "port", "80"), remote: "203.0.113.5:1", header: xff("198.51.100.9")}, 403, ""},
		{"untrusted peer: X-Real-IP ignored", req{target: "/upstream/add?port=80", remote: "203.0.113.5:1", header: map[string]string{"X-Real-IP": "198.51.100.7"}}, 200, "203.0.113.5:80"},
		{"trusted peer: right-most", req{target: "/upstream/add?port=80", remote: "10.0.0.2:1", header: xff("192.0.2.1, 198.51.100.7")}, 200, "198.51.100.7:80"},
		{"trusted peer: skips trusted hops", req{target: "/upstream/add?port=80", remote: "10.0.0.2:1", header: xff("198.51.100.7, 10.0.0.3")}, 200, "198.51.100.7:80"},
		{"trusted peer: forged left-most loopback", req{target: "/upstream/add?" + q("host", "192.0.2.99", "port", "80"), remote: "10.0.0.2:1", header: xff("127.0.0.1, 198.51.100.7")}, 403, ""},
		{"trusted peer: client names itself", req{target: "/upstream/add?" + q("host", "198.51.100.7", "port", "80"), remote: "10.0.0.2:1", header: xff("198.51.100.7")}, 200, "198.51.100.7:80"},
		{"trusted peer: client names the proxy", req{target: "/upstream/add?" + q("host", "10.0.0.2", "port", "80"), remote: "10.0.0.2:1", header: xff("198.51.100.7")}, 403, ""},
		{"trusted peer: hop with port", req{target: "/upstream/add?port=80", remote: "10.0.0.2:1", header: xff("198.51.100.7:5555")}, 200, "198.51.100.7:80"},
		{"trusted peer: X-Real-IP", req{target: "/upstream/add?port=80", remote: "10.0.0.2:1", header: map[string]string{"X-Real-IP": "198.51.100.8"}}, 200, "198.51.100.8:80"},
		{"trusted peer: garbled hop", req{target: "/upstream/add?port=80", remote: "10.0.0.2:1", header: xff("198.51.100.7, nonsense")}, 400, ""},
		{"remote proxy forwards loopback", req{target: "/upstream/add?port=80", remote: "10.0.0.2:1", header: xff("127.0.0.1")}, 403, ""},
		{"local proxy forwards loopback", req{target: "/upstream/add?" + q("host", "192.0.2.99", "port", "80"), header: xff("127.0.0.1")}, 200, "192.0.2.99:80"},
		{"local proxy forwards a remote client", req{target: "/upstream/add?" + q("host", "192.0.2.99", "port", "80"), header: xff("198.51.100.7")}, 403, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, _ := newAPI(t, nil)
			a.TrustedProxies = trusted
			reply := check(t, a, a.Handler(), c.r, c.code)
			if c.code == 200 && reply["server"] != c.server {
				t.Errorf("server %v, want %s", reply["server"], c.server)
			}
		})
	}
}

func TestBackendRules(t *testing.T) {
	self := []netip.AddrPort{netip.MustParseAddrPort("[::]:8000"), netip.MustParseAddrPort("127.0.0.1:9090")}
	allow := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("169.254.169.0/24"), netip.MustParsePrefix("2001:db8:77::/48")}
	cases := []struct {
		name  string
		allow bool // with the allow-list above
		host  string
		port  string
		code  int
	}{
		{"public", false, "198.51.100.7", "80", 200},
		{"unspecified v4", false, "0.0.0.0", "80", 403},
		{"this network", false, "0.1.2.3", "80", 403},
		{"unspecified v6", false, "::", "80", 403},
		{"unspecified v6 bracketed", false, "[::]", "80", 403},
		{"unspecified mapped", false, "::ffff:0.0.0.0", "80", 403},
		{"multicast v4", false, "224.0.0.1", "80", 403},
		{"multicast v6", false, "ff02::1", "80", 403},
		{"broadcast", false, "255.255.255.255", "80", 403},
		{"directed broadcast of a local net", false, "192.0.2.255", "80", 403},
		{"metadata service", false, "169.254.169.254", "80", 403},
		{"metadata mapped", false, "::ffff:169.254.169.254", "80", 403},
		{"metadata via NAT64", false, "64:ff9b::a9fe:a9fe", "80", 403},
		{"link-local v6", false, "fe80::1", "80", 403},
		{"loop: wildcard listen, loopback", false, "127.0.0.1", "8000", 403},
		{"loop: wildcard listen, other loopback", false, "127.0.0.2", "8000", 403},
		{"loop: wildcard listen, ::1", false, "::1", "8000", 403},
		{"loop: wildcard listen, LAN address", false, "192.0.2.10", "8000", 403},
		{"loop: wildcard listen, LAN v6", false, "2001:db8:5::10", "8000", 403},
		{"loop: mapped", false, "::ffff:192.0.2.10", "8000", 403},
		{"loop: admin address", false, "127.0.0.1", "9090", 403},
		{"not a loop: other port", false, "192.0.2.10", "8001", 200},
		{"not a loop: admin port elsewhere", false, "192.0.2.10", "9090", 200},
		{"not a loop: remote with listen port", false, "198.51.100.7", "8000", 200},
		{"allow hit", true, "10.1.2.3", "80", 200},
		{"allow hit mapped", true, "::ffff:10.1.2.3", "80", 200},
		{"allow hit v6", true, "2001:db8:77::1", "80", 200},
		{"allow miss", true, "11.0.0.1", "80", 403},
		{"allow miss v6", true, "2001:db8:78::1", "80", 403},
		{"allow names link-local", true, "169.254.169.254", "80", 200},
		{"allow misses other link-local", true, "169.254.1.1", "80", 403},
		{"allow does not lift unspecified", true, "0.0.0.0", "80", 403},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, _ := newAPI(t, func(s *Security) {
				s.Token, s.Self = "t", self
				if c.allow {
					s.AllowBackends = allow
				}
			})
			check(t, a, a.Handler(), req{target: "/upstream/add?" + q("host", c.host, "port", c.port), remote: "203.0.113.5:1", token: "t"}, c.code)
		})
	}
}

// TestOwnAddressRulesToo: the address-only rule does not lift the address rules: a backend on
// a link-local address cannot register itself.
func TestOwnAddressRulesToo(t *testing.T) {
	a, _ := newAPI(t, nil)
	check(t, a, a.Handler(), req{target: "/upstream/add?port=80", remote: "169.254.10.10:1"}, 403)
	check(t, a, a.Handler(), req{target: "/upstream/add?port=80", remote: "[fe80::1]:1"}, 403)
}

// fakeDNS answers from a table, counting lookups; a name whose answer changes after the first
// lookup plays a rebinding attacker.
type fakeDNS struct {
	calls   atomic.Int32
	answers map[string][]string
	rebind  map[string][]string // answers from the second lookup on
}

func (f *fakeDNS) lookup(_ context.Context, host string) ([]netip.Addr, error) {
	n := f.calls.Add(1)
	answer, ok := f.answers[host]
	if r, rebinds := f.rebind[host]; rebinds && n > 1 {
		answer = r
	}
	switch {
	case host == "timeout.test":
		return nil, &net.DNSError{Err: "i/o timeout", Name: host, IsTimeout: true}
	case !ok:
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, s := range answer {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

func TestResolveOnce(t *testing.T) {
	dns := &fakeDNS{answers: map[string][]string{
		"good.test":    {"198.51.100.7", "198.51.100.8"},
		"mapped.test":  {"::ffff:198.51.100.9"},
		"mixed.test":   {"198.51.100.7", "169.254.169.254"},
		"meta.test":    {"169.254.169.254"},
		"loop.test":    {"127.0.0.1"},
		"outside.test": {"10.0.0.1", "11.0.0.1"},
		"empty.test":   {},
	}}
	cases := []struct {
		host, port string
		code       int
		address    string
	}{
		{"good.test", "80", 200, "198.51.100.7"},
		{"GOOD.test.", "80", 200, "198.51.100.7"},
		{"mapped.test", "80", 200, "198.51.100.9"},
		{"mixed.test", "80", 403, ""},
		{"meta.test", "80", 403, ""},
		{"loop.test", "9090", 403, ""},
		{"outside.test", "80", 403, ""},
		{"nx.test", "80", 400, ""},
		{"empty.test", "80", 400, ""},
		{"timeout.test", "80", 503, ""},
	}
	for _, c := range cases {
		t.Run(c.host, func(t *testing.T) {
			a, p := newAPI(t, func(s *Security) {
				s.LookupHost = dns.lookup
				s.Self = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9090")}
				if c.host == "outside.test" {
					s.AllowBackends = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
				}
			})
			check(t, a, a.Handler(), req{target: "/upstream/add?" + q("host", c.host, "port", c.port)}, c.code)
			if c.code != 200 {
				return
			}
			snap := p.Snapshot()
			if len(snap) != 1 || snap[0].Address.Host != "good.test" && snap[0].Address.Host != "mapped.test" {
				t.Fatalf("snapshot %+v", snap)
			}
			if got := snap[0].Address.IP.String(); got != c.address {
				t.Errorf("stored address %s, want %s", got, c.address)
			}
		})
	}
}

// TestNoRebinding: the name is resolved at registration only; later heartbeats neither resolve
// it again nor change the address dialed, and status shows both name and address.
func TestNoRebinding(t *testing.T) {
	dns := &fakeDNS{
		answers: map[string][]string{"svc.test": {"198.51.100.7"}},
		rebind:  map[string][]string{"svc.test": {"169.254.169.254"}},
	}
	a, p := newAPI(t, func(s *Security) { s.LookupHost = dns.lookup })
	h := a.Handler()
	for range 3 {
		check(t, a, h, req{target: "/upstream/add?" + q("host", "svc.test", "port", "80")}, 200)
	}
	if n := dns.calls.Load(); n != 1 {
		t.Errorf("%d lookups, want 1", n)
	}
	b, err := p.Acquire(netip.Addr{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(b)
	if got := b.DialAddress(); got != "198.51.100.7:80" {
		t.Errorf("dials %s, want 198.51.100.7:80", got)
	}
	if got := b.Key(); got != "svc.test:80" {
		t.Errorf("key %s", got)
	}
	st := registry(t, a)
	for _, want := range []string{`"host":"svc.test"`, `"address":"198.51.100.7"`} {
		if !strings.Contains(st, want) {
			t.Errorf("status %s lacks %s", st, want)
		}
	}
}

func TestRegistryCap(t *testing.T) {
	a, p := newAPI(t, nil)
	p.MaxBackends = 2
	h := a.Handler()
	add := func(port string) req { return req{target: "/upstream/add?" + q("host", "198.51.100.7", "port", port)} }
	check(t, a, h, add("1"), 200)
	check(t, a, h, add("2"), 200)
	reply := check(t, a, h, add("3"), 429)
	if reply["error"] == nil {
		t.Errorf("429 without error: %v", reply)
	}
	check(t, a, h, add("1"), 200) // a heartbeat of a known backend still passes
	check(t, a, h, req{target: "/upstream/remove?" + q("host", "198.51.100.7", "port", "2")}, 200)
	check(t, a, h, add("3"), 200) // room again
	if got := p.Snapshot(); len(got) != 2 || got[0].Key != "198.51.100.7:1" || got[1].Key != "198.51.100.7:3" {
		t.Errorf("registry %+v", got)
	}
}

// TestWildcardLoopRealInterfaces: with this machine's real interface list, every one of its
// addresses with the wildcard listen port is a loop, and the same address with another port
// is not.
func TestWildcardLoopRealInterfaces(t *testing.T) {
	prefixes, err := systemInterfaces()
	if err != nil || len(prefixes) == 0 {
		t.Skipf("no interface addresses: %v", err)
	}
	var s Security
	s.Self = []netip.AddrPort{netip.MustParseAddrPort("[::]:8000")}
	for _, p := range prefixes {
		ip := p.Addr()
		if ip.IsLinkLocalUnicast() || ip.IsMulticast() {
			continue // refused anyway, for another reason
		}
		if err := s.checkBackend(ip, 8000); err == nil {
			t.Errorf("%s:8000 with a wildcard listener on 8000: not seen as a loop", ip)
		}
		if err := s.checkBackend(ip, 8001); err != nil {
			t.Errorf("%s:8001: %v", ip, err)
		}
	}
	if err := s.checkBackend(netip.MustParseAddr("127.0.0.9"), 8000); err == nil {
		t.Errorf("127.0.0.9:8000 not seen as a loop")
	}
}
