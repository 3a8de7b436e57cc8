package listener

import (
	"strings"
	"testing"
)

// eachPlane runs test once on each data plane this system has, as subtests named for the
// plane; helpers that build a Server read the plane back with planeOf.
func eachPlane(t *testing.T, test func(t *testing.T)) {
	for _, p := range Planes() {
		t.Run(string(p), test)
	}
}

// planeOf is the plane of the eachPlane subtest t runs in (or under); goroutine outside one.
func planeOf(t *testing.T) DataPlane {
	for _, part := range strings.Split(t.Name(), "/") {
		if p, err := ParseDataPlane(part); err == nil {
			return p
		}
	}
	return PlaneGoroutine
}

// EachPlane and PlaneOf serve the external tests (package listener_test) too.
var EachPlane, PlaneOf = eachPlane, planeOf
