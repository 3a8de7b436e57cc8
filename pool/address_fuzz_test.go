package pool

import (
	"net/netip"
	"strconv"
	"testing"
)

// FuzzParseHost: no input panics, and whatever is accepted is canonical (parsing it again
// gives it back), short enough, and either a plain IP literal or a lower-case RFC 1123 name
// that no resolver could take for a number.
//
//	go test -run='^$' -fuzz='^FuzzParseHost$' -fuzztime=5s ./pool
func FuzzParseHost(f *testing.F) {
	for _, s := range []string{
		"example.com", "EXAMPLE.COM.", "10.0.0.1", "::1", "[::1]", "::ffff:10.0.0.1", "[fe80::1%eth0]",
		"0177.0.0.1", "0x7f000001", "127.1", "2130706433", "a..b", "-a", "a@b", "a/b", "a b", "a\x00b",
		"host:80", "%2e", "xn--r8jz45g.jp", "1.2.3.4.5",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := ParseHost(s)
		if err != nil {
			return
		}
		again, err := ParseHost(out)
		if err != nil || again != out {
			t.Fatalf("ParseHost(%q) = %q, which parses as %q, %v", s, out, again, err)
		}
		if ip, err := netip.ParseAddr(out); err == nil {
			if ip.Zone() != "" || ip.Is4In6() || ip.String() != out {
				t.Fatalf("ParseHost(%q) = %q: not a canonical plain IP", s, out)
			}
			return
		}
		if len(out) > maxNameLen {
			t.Fatalf("ParseHost(%q) = %q: %d bytes", s, out, len(out))
		}
		for i := 0; i < len(out); i++ {
			if c := out[i]; !(c == '-' || c == '.' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
				t.Fatalf("ParseHost(%q) = %q: byte %q", s, out, c)
			}
		}
	})
}

// FuzzParsePort: an accepted port is exactly its canonical decimal form, within 1..65535.
//
//	go test -run='^$' -fuzz='^FuzzParsePort$' -fuzztime=5s ./pool
func FuzzParsePort(f *testing.F) {
	for _, s := range []string{"80", "65535", "65536", "0", "080", "+1", "0x50", "8080abc", "1e3", " 80", "-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParsePort(s)
		if err != nil {
			return
		}
		if n < 1 || n > 65535 || strconv.Itoa(n) != s {
			t.Fatalf("ParsePort(%q) = %d", s, n)
		}
	})
}
