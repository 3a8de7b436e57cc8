package listener

import (
	"testing"

	"github.com/fulcrumlb/fulcrum/internal/testbed"
)

// planes remembers the plane of each eachPlane subtest.
var planes testbed.Variants[DataPlane]

// eachPlane runs test once on each data plane this system has, as subtests named for the
// plane; helpers that build a Server ask planeOf for it.
func eachPlane(t *testing.T, test func(t *testing.T)) { planes.Each(t, Planes(), test) }

// planeOf is the plane of the eachPlane subtest t runs in (or under); goroutine outside one.
func planeOf(t *testing.T) DataPlane {
	if p, ok := planes.Of(t); ok {
		return p
	}
	return PlaneGoroutine
}

// EachPlane and PlaneOf serve the external tests (package listener_test) too.
var EachPlane, PlaneOf = eachPlane, planeOf
