package clientlimit

import (
	"net/netip"
	"strings"
	"testing"
)

func prefixes(t *testing.T, flag string, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		p, err := ParseClientCIDR(flag, s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func TestAllowDeny(t *testing.T) {
	tb := New(Config{
		Allow: prefixes(t, "allow-client", "10.0.0.0/8", "2001:db8::/32", "192.0.2.7"),
		Deny:  prefixes(t, "deny-client", "10.1.0.0/16", "2001:db8:dead::/48", "10.2.3.4"),
	})
	cases := map[string]string{
		"10.9.9.9":         "",
		"10.1.2.3":         ReasonACL, // deny wins over allow
		"10.2.3.4":         ReasonACL, // a bare address is its /32
		"10.2.3.5":         "",
		"192.0.2.7":        "",
		"192.0.2.8":        ReasonACL, // outside the allow list
		"::ffff:10.9.9.9":  "",
		"::ffff:10.1.0.1":  ReasonACL,
		"2001:db8::1":      "",
		"2001:db8:dead::1": ReasonACL,
		"2001:db9::1":      ReasonACL,
		"fe80::1%eth0":     ReasonACL,
		"2001:db8::1%eth0": "",
	}
	for a, want := range cases {
		t.Run(a, func(t *testing.T) {
			if _, got := tb.Admit(addr(t, a), t0); got != want {
				t.Errorf("Admit(%s) = %q, want %q", a, got, want)
			}
		})
	}
	denyOnly := New(Config{Deny: prefixes(t, "deny-client", "0.0.0.0/0")})
	if _, got := denyOnly.Admit(addr(t, "::1"), t0); got != "" {
		t.Errorf("an IPv4 deny list refused an IPv6 client")
	}
	if _, got := denyOnly.Admit(addr(t, "127.0.0.1"), t0); got != ReasonACL {
		t.Errorf("0.0.0.0/0 denied: got %q", got)
	}
	if denyOnly.Len() != 0 {
		t.Errorf("a denied client took an entry")
	}
}

func TestParseClientCIDR(t *testing.T) {
	good := map[string]string{
		"10.0.0.0/8":          "10.0.0.0/8",
		"10.1.2.3/8":          "10.0.0.0/8",
		"192.0.2.7":           "192.0.2.7/32",
		"2001:db8::1":         "2001:db8::1/128",
		" 2001:db8::/32 ":     "2001:db8::/32",
		"::ffff:10.0.0.0/104": "10.0.0.0/8",
	}
	for in, want := range good {
		p, err := ParseClientCIDR("allow-client", in)
		if err != nil || p.String() != want {
			t.Errorf("ParseClientCIDR(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"", "10.0.0.0/33", "example.com", "10.0.0", "fe80::1%eth0", "10.0.0.0/", "/8"} {
		_, err := ParseClientCIDR("deny-client", in)
		if err == nil || !strings.Contains(err.Error(), "for --deny-client") {
			t.Errorf("ParseClientCIDR(%q): %v; want an error naming --deny-client", in, err)
		}
	}
}

// FuzzParseClientCIDR: an accepted value is a masked, unmapped prefix that reads back the same
// and contains its own address.
func FuzzParseClientCIDR(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "10.1.2.3/8", "192.0.2.7", "2001:db8::/32", "::ffff:10.0.0.0/104", "fe80::1%eth0", "10.0.0.0/33", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseClientCIDR("allow-client", s)
		if err != nil {
			return
		}
		if p != p.Masked() || p.Addr().Is4In6() && p.Bits() >= 96 || p.Addr().Zone() != "" {
			t.Fatalf("%q → %v: not canonical", s, p)
		}
		again, err := ParseClientCIDR("allow-client", p.String())
		if err != nil || again != p {
			t.Fatalf("%q → %v → %v, %v", s, p, again, err)
		}
		a := newACL([]netip.Prefix{p})
		if !a.contains(p.Addr()) {
			t.Fatalf("%v does not contain its own address", p)
		}
	})
}
