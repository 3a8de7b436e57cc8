package main

import (
	"slices"
	"strings"
	"testing"
)

// serveTestArgs are the flags every serve a test starts takes ahead of the test's own: the
// plane of the eachPlane subtest it runs in, and no active health checks unless the test sets
// --health-interval itself (or reads its flags from a --config file, which is then its
// business). A check is a connection to every backend each 5 s by default; landing inside a
// test it is one more connection a backend accepts and no client made, and every test that
// accounts for its backends' connections would count it.
func serveTestArgs(t *testing.T, args []string) []string {
	out := planeArgs(t)
	if !setsFlag(args, "health-interval") && !setsFlag(args, "config") {
		out = append(out, "--health-interval", "0")
	}
	return out
}

// setsFlag reports whether args name the flag --name (as "--name v" or "--name=v").
func setsFlag(args []string, name string) bool {
	return slices.ContainsFunc(args, func(a string) bool {
		a = strings.TrimLeft(a, "-")
		return a == name || strings.HasPrefix(a, name+"=")
	})
}

// TestServeTestArgsTurnOffHealthChecks: the serves tests start run no active health checks
// unless a test asks for them; the fault tests' accounting of backend connections needs it.
func TestServeTestArgsTurnOffHealthChecks(t *testing.T) {
	for _, tc := range []struct {
		args []string
		off  bool
	}{
		{nil, true},
		{[]string{"--backend", "127.0.0.1:1"}, true},
		{[]string{"--health-interval", "20ms"}, false},
		{[]string{"--health-interval=20ms"}, false},
		{[]string{"--config", "fulcrum.yaml"}, false},
	} {
		got := serveTestArgs(t, tc.args)
		if off := slices.Equal(got[len(got)-min(len(got), 2):], []string{"--health-interval", "0"}); off != tc.off {
			t.Errorf("serveTestArgs(%q) = %q; checks turned off: %v, want %v", tc.args, got, off, tc.off)
		}
	}
}
