package pool

import (
	"strings"
	"testing"
)

func TestParseServiceName(t *testing.T) {
	for _, ok := range []string{"default", "db", "web-1", "a.b_c", strings.Repeat("x", 63), "0"} {
		if _, err := ParseServiceName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "DB", "web 1", "a/b", "ü", strings.Repeat("x", 64), "db:1", "%2e"} {
		if _, err := ParseServiceName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseServiceName(f *testing.F) {
	for _, s := range []string{"default", "db", "", "DB", "a/b", strings.Repeat("x", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, err := ParseServiceName(s)
		if err != nil {
			return
		}
		if name != s || len(s) > 63 || strings.ContainsAny(s, "/ :%?#&=\"\\") {
			t.Fatalf("accepted %q", s)
		}
	})
}
