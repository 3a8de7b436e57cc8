package sniroute

import "testing"

// FuzzParsePattern: an accepted pattern is canonical (parsing its String gives it back) and
// routes what it should: itself when exact, one label more when a wildcard.
func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{"api.example.com", "*.example.com", "API.Example.COM.", "a..b", "*", "a.*.b", "_x.y-z", "-a", "x\x00y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePattern(s)
		if err != nil {
			return
		}
		again, err := ParsePattern(p.String())
		if err != nil || again != p {
			t.Fatalf("%q parsed to %q, which parses to %q, %v", s, p, again, err)
		}
		tb, err := Build("fuzz", []Service[int]{{Name: "x", Patterns: []Pattern{p}, Value: 1}})
		if err != nil {
			t.Fatal(err)
		}
		name := p.String()
		if p.Wildcard() {
			name = "a" + name[1:]
		}
		if v, how := tb.Lookup([]byte(name)); v != 1 || how == NoRoute {
			t.Fatalf("pattern %q does not route %q", p, name)
		}
	})
}
