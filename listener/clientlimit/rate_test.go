package clientlimit

import (
	"strings"
	"testing"
)

func TestParseRate(t *testing.T) {
	good := map[string]Rate{
		"10":    {PerSecond: 10, Burst: 10},
		"10/25": {PerSecond: 10, Burst: 25},
		"0.5":   {PerSecond: 0.5, Burst: 1},
		"2.5/1": {PerSecond: 2.5, Burst: 1},
		"0":     {},
		"":      {},
	}
	for in, want := range good {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	bad := map[string]string{
		"fast":   "must be a number",
		"-1":     "must be a number",
		"NaN":    "must be a number",
		"Inf":    "must be a number",
		"1e7":    "must be a number",
		"10/":    "whole number",
		"10/0":   "whole number",
		"10/1.5": "whole number",
		"10/x":   "whole number",
		"/5":     "must be a number",
		"0/5":    "a burst needs a rate",
		"10/5/5": "whole number",
	}
	for in, want := range bad {
		_, err := ParseRate(in)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "for --client-rate") {
			t.Errorf("ParseRate(%q): %v; want an error naming --client-rate and saying %q", in, err, want)
		}
	}
}

// FuzzParseRate: an accepted rate is within bounds and reads back from its String.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"10", "10/20", "0.5", "0", "", "1e6/1000000", "x/1", "1/", "-0", "0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			return
		}
		if !r.On() {
			if r != (Rate{}) {
				t.Fatalf("%q: an off rate with a burst: %+v", s, r)
			}
			return
		}
		if r.PerSecond > maxRate || r.Burst < 1 || r.Burst > maxRate {
			t.Fatalf("%q: out of bounds: %+v", s, r)
		}
		again, err := ParseRate(r.String())
		if err != nil || again != r {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, r, r.String(), again, err)
		}
	})
}
