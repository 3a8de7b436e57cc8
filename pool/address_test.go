package pool_test

import (
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/pool"
)

func TestParseHost(t *testing.T) {
	good := map[string]string{
		"10.0.0.1":          "10.0.0.1",
		"::1":               "::1",
		"[::1]":             "::1",
		"::ffff:10.0.0.1":   "10.0.0.1",
		"Backend-1.Example": "backend-1.example",
		"localhost":         "localhost",
		"svc.example.com.":  "svc.example.com",
		"a1.b2":             "a1.b2",
	}
	for in, want := range good {
		got, err := pool.ParseHost(in)
		if err != nil || got != want {
			t.Errorf("ParseHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{"", " ", "a b", "a\x00b", "user@host", "host/path", "host:80", "[::1]:80",
		"0177.0.0.1", "1.2.3", "-a.example", "a-.example", "a..b", "%31.2.3.4", "fe80::1%eth0",
		"[10.0.0.1]", strings.Repeat("a", 64) + ".example", strings.Repeat("a.", 127) + "ab", "under_score"}
	for _, in := range bad {
		if got, err := pool.ParseHost(in); err == nil {
			t.Errorf("ParseHost(%q) = %q, want an error", in, got)
		}
	}
}

func TestParsePortAndWeightAreStrict(t *testing.T) {
	for _, s := range []string{"", "0", "65536", "+1", "-1", "0x50", "8080abc", "1e3", " 80", "80 ", "1234567", "٣"} {
		if n, err := pool.ParsePort(s); err == nil {
			t.Errorf("ParsePort(%q) = %d, want an error", s, n)
		}
	}
	for s, want := range map[string]int{"1": 1, "80": 80, "65535": 65535} {
		if n, err := pool.ParsePort(s); err != nil || n != want {
			t.Errorf("ParsePort(%q) = %d, %v", s, n, err)
		}
	}
	for _, s := range []string{"", "0", "257", "+2", "1.5", "0x2"} {
		if n, err := pool.ParseWeight(s); err == nil {
			t.Errorf("ParseWeight(%q) = %d, want an error", s, n)
		}
	}
	if n, err := pool.ParseWeight("256"); err != nil || n != 256 {
		t.Errorf("ParseWeight(256) = %d, %v", n, err)
	}
}

func TestParseAddress(t *testing.T) {
	a, err := pool.ParseAddress("[::1]:8080")
	if err != nil || a.Key() != "[::1]:8080" {
		t.Fatalf("ParseAddress([::1]:8080) = %v, %v", a, err)
	}
	for _, s := range []string{"10.0.0.1", "10.0.0.1:0", ":80", "bad host:80"} {
		if _, err := pool.ParseAddress(s); err == nil {
			t.Errorf("ParseAddress(%q) accepted", s)
		}
	}
}
