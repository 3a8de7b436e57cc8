package admin

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestHostSyntax: every malformed host is a 400 and leaves the registry alone. The requests go
// to remove from the operator's loopback, where no policy applies and a well-formed host that
// is not registered is a 404; each value is percent-encoded so that it arrives as written.
func TestHostSyntax(t *testing.T) {
	bad := []string{
		"a b", " localhost", "localhost ", "a\x00b", "a\tb", "a\nb", "user@host", "a/b", "a\\b",
		"host:80", "127.0.0.1:80", "[::1]:80", "::1]", "[::1", "[1.2.3.4]", "[fe80::1%eth0]",
		"fe80::1%eth0", "127.0.0.1%00", "ex%ample.com", "%2e%2e", "a..b", ".", "..", "-a.com",
		"a-.com", "a_b.com", "例え.jp", "0177.0.0.1", "0x7f000001", "0X7F.1", "0x7f.0.0.1",
		"127.1", "2130706433", "1.2.3.4.5", "1.2.3.0x4", "01.02.03.04", "1.2.3.4.",
		strings.Repeat("a", 64) + ".com", strings.Repeat("abcdefg.", 32) + "com", strings.Repeat("abcdefg.", 31) + "abcdef", "*.example.com",
		"example.com/x", "example.com?x", "example.com#x", "http://example.com",
	}
	good := []string{
		"example.com", "EXAMPLE.com.", "a-b.c-d", "xn--r8jz45g.jp", "10.0.0.1", "::1", "[::1]",
		"[2001:db8::1]", "::ffff:10.0.0.1", "1.2.3.4", strings.Repeat("a", 63) + ".com",
		strings.Repeat("abcdefg.", 31) + "abcde", // 253 bytes
		strings.Repeat("abcdefg.", 31) + "abcde.", "0x7g", "1a.2b",
	}
	a, _ := newAPI(t, nil)
	h := a.Handler()
	for _, host := range bad {
		t.Run("bad "+host, func(t *testing.T) {
			check(t, a, h, req{target: "/upstream/remove?port=80&host=" + url.QueryEscape(host)}, 400)
		})
	}
	for _, host := range good {
		t.Run("good "+host, func(t *testing.T) {
			check(t, a, h, req{target: "/upstream/remove?port=80&host=" + url.QueryEscape(host)}, 404)
		})
	}
}

// TestRawParams: the query as a client could write it, percent-escape tricks included.
func TestRawParams(t *testing.T) {
	cases := []struct {
		query string
		code  int
	}{
		{"port=80&host=%zz", 400},
		{"port=%zz", 400},
		{"port=80&host=127.0.0.1%", 400},
		{"port=80&host=127.0.0.1%2", 400},
		{"port=80&host=127.0.0.1%2500", 400},
		{"port=80&host=%31%32%37%2e0.0.1", 404}, // plain escapes of a valid host are just that host
		{"port=80&host=127.0.0.1%00", 400},
		{"port=80&host=127.0.0.1%0d%0aX:%20y", 400},
		{"port=80&host=%252e", 400},
		{"port=80&host=a%2Fb", 400},
		{"port=80&host=a%40b", 400},
		{"port=80;host=x", 400},
		{"port=80&host=::1&host=10.0.0.1", 400},
		{"port=80&port=81", 400},
		{"port=80&nonsense=1", 404},
		{"port=80&host=", 404},
	}
	a, _ := newAPI(t, nil)
	h := a.Handler()
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			check(t, a, h, req{target: "/upstream/remove?" + c.query}, c.code)
		})
	}
}

func TestPortAndWeightSyntax(t *testing.T) {
	badPorts := []string{"", "+1", "-1", "0x50", "8080abc", "1e3", " 80", "80 ", "080", "0", "65536",
		"99999999999999999999", "８０", "80.0", "\t80"}
	badWeights := []string{"+1", "-1", "0x10", "1e2", "0", "257", " 1", "1 ", "01", "1.0", "w"}
	a, _ := newAPI(t, nil)
	h := a.Handler()
	for _, p := range badPorts {
		t.Run("port "+p, func(t *testing.T) {
			check(t, a, h, req{target: "/upstream/add?" + q("host", "198.51.100.7", "port", p)}, 400)
			check(t, a, h, req{target: "/upstream/remove?" + q("host", "198.51.100.7", "port", p)}, 400)
		})
	}
	for _, w := range badWeights {
		t.Run("weight "+w, func(t *testing.T) {
			check(t, a, h, req{target: "/upstream/add?" + q("host", "198.51.100.7", "port", "80", "weight", w)}, 400)
		})
	}
	check(t, a, h, req{target: "/upstream/add?" + q("host", "198.51.100.7", "port", "65535", "weight", "256")}, 200)
	check(t, a, h, req{target: "/upstream/add?" + q("host", "198.51.100.7", "port", "1", "weight", "1")}, 200)
}

func TestFormBody(t *testing.T) {
	a, _ := newAPI(t, nil)
	h := a.Handler()
	check(t, a, h, req{method: "POST", target: "/upstream/add", body: "host=198.51.100.7&port=%zz"}, 400)
	check(t, a, h, req{method: "POST", target: "/upstream/add?host=198.51.100.7", body: "host=198.51.100.8&port=80"}, 400)
	big := "port=80&host=198.51.100.7&pad=" + strings.Repeat("x", 64<<10)
	check(t, a, h, req{method: "POST", target: "/upstream/add", body: big}, http.StatusRequestEntityTooLarge)
	check(t, a, h, req{method: "POST", target: "/upstream/add", body: "port=80&host=198.51.100.7"}, 200)
}
