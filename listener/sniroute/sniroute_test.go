package sniroute

import (
	"strings"
	"testing"
)

func mustPatterns(t testing.TB, ss ...string) []Pattern {
	t.Helper()
	var out []Pattern
	for _, s := range ss {
		p, err := ParsePattern(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// testTable is the layout: a.test, *.b.test and a default on one address.
func testTable(t testing.TB) *Table[string] {
	t.Helper()
	tb, err := Build(":443", []Service[string]{
		{Name: "a", Patterns: mustPatterns(t, "a.test", "API.Example.com."), Value: "a"},
		{Name: "b", Patterns: mustPatterns(t, "*.b.test", "*.example.com"), Value: "b"},
		{Name: "exact-b", Patterns: mustPatterns(t, "x.b.test"), Value: "exact-b"},
		{Name: "web", Value: "web"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestLookup(t *testing.T) {
	tb := testTable(t)
	cases := []struct {
		name, want string
		how        Match
	}{
		{"a.test", "a", Exact},
		{"A.TEST", "a", Exact},
		{"a.test.", "a", Exact},
		{"api.example.com", "a", Exact},
		{"svc.b.test", "b", Wildcard},
		{"SVC.B.Test.", "b", Wildcard},
		{"x.b.test", "exact-b", Exact}, // exact beats wildcard
		{"b.test", "web", Default},     // a wildcard needs one more label
		{"a.svc.b.test", "web", Default},
		{"other.example.com", "b", Wildcard},
		{"example.com", "web", Default},
		{".b.test", "web", Default},
		{"", "web", Default},
		{strings.Repeat("a.", 200) + "b.test", "web", Default},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, how := tb.Lookup([]byte(c.name))
			if got != c.want || how != c.how {
				t.Errorf("Lookup(%q) = %q, %v; want %q, %v", c.name, got, how, c.want, c.how)
			}
		})
	}
}

func TestLookupWithoutDefault(t *testing.T) {
	tb, err := Build(":443", []Service[int]{{Name: "a", Patterns: mustPatterns(t, "a.test"), Value: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if v, how := tb.Lookup([]byte("b.test")); how != NoRoute || v != 0 {
		t.Errorf("Lookup(b.test) = %v, %v; want 0, no_route", v, how)
	}
	var zero Table[int]
	if _, how := zero.Lookup([]byte("a.test")); how != NoRoute {
		t.Errorf("the zero table routed a name: %v", how)
	}
}

func TestBuildErrors(t *testing.T) {
	cases := []struct {
		name     string
		services []Service[int]
		want     string
	}{
		{"same pattern, two services", []Service[int]{
			{Name: "a", Patterns: mustPatterns(t, "a.test")},
			{Name: "b", Patterns: mustPatterns(t, "A.test.")},
		}, `services "a" and "b" both claim server name "a.test"`},
		{"same wildcard, two services", []Service[int]{
			{Name: "a", Patterns: mustPatterns(t, "*.b.test")},
			{Name: "b", Patterns: mustPatterns(t, "*.B.TEST")},
		}, `both claim server name "*.b.test"`},
		{"same pattern twice in one service", []Service[int]{
			{Name: "a", Patterns: mustPatterns(t, "a.test", "a.test")},
		}, `service "a" names server name "a.test" twice`},
		{"two defaults", []Service[int]{{Name: "web"}, {Name: "other"}},
			`services "web" and "other" both have no --sni pattern`},
		{"zero pattern", []Service[int]{{Name: "a", Patterns: []Pattern{{}}}},
			`an empty server-name pattern`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Build(":443", c.services)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "listen :443") {
				t.Fatalf("error %v; want one naming the address and %s", err, c.want)
			}
		})
	}
	if _, err := Build(":443", []Service[int]{
		{Name: "a", Patterns: mustPatterns(t, "b.test")},
		{Name: "b", Patterns: mustPatterns(t, "*.b.test")},
	}); err != nil {
		t.Errorf("a name and the wildcard under it are different patterns: %v", err)
	}
}

func TestParsePattern(t *testing.T) {
	good := map[string]string{
		"api.example.com":  "api.example.com",
		"API.Example.COM.": "api.example.com",
		"*.example.com":    "*.example.com",
		"*.Example.com.":   "*.example.com",
		"_srv.x-y.test":    "_srv.x-y.test",
		"localhost":        "localhost",
	}
	for in, want := range good {
		p, err := ParsePattern(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePattern(%q) = %q, %v; want %q", in, p, err, want)
		}
	}
	bad := map[string]string{
		"":                        "a name is needed",
		".":                       "a name is needed",
		"*":                       "whole leftmost label",
		"*.":                      "whole leftmost label",
		"a.*.example.com":         "whole leftmost label",
		"*a.example.com":          "whole leftmost label",
		"*.*.example.com":         "whole leftmost label",
		"a..b":                    "empty label",
		".a.b":                    "empty label",
		"-a.b":                    "hyphen",
		"a b.c":                   "letters, digits",
		"a:443":                   "letters, digits",
		"é.example":               "letters, digits",
		strings.Repeat("a", 64):   "longer than 63",
		strings.Repeat("a.", 128): "longer than 253",
	}
	for in, want := range bad {
		_, err := ParsePattern(in)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "invalid server-name pattern") {
			t.Errorf("ParsePattern(%q): error %v; want one saying %q", in, err, want)
		}
	}
}

func TestParseFlag(t *testing.T) {
	a, err := ParseFlag("api=*.Example.com")
	if err != nil || a.Service != "api" || a.Pattern.String() != "*.example.com" || !a.Pattern.Wildcard() {
		t.Fatalf("ParseFlag = %+v, %v", a, err)
	}
	bad := map[string]string{
		"api":              "want NAME=PATTERN",
		"=api.example.com": "service name before '=' is empty",
		"api=":             "pattern after '=' is empty",
		"api=a..b":         "empty label",
		"api=a=b":          "letters, digits",
	}
	for in, want := range bad {
		_, err := ParseFlag(in)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "for --sni") {
			t.Errorf("ParseFlag(%q): error %v; want one naming --sni and saying %q", in, err, want)
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	tb := testTable(b)
	for _, name := range []string{"a.test", "svc.b.test", "SVC.B.TEST", "nothing.example.org"} {
		b.Run(name, func(b *testing.B) {
			key := []byte(name)
			b.ReportAllocs()
			for b.Loop() {
				tb.Lookup(key)
			}
		})
	}
}
