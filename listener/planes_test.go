package listener

import (
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/fulcrumlb/fulcrum/internal/testbed"
)

// planes remembers the plane of each eachPlane subtest.
var planes testbed.Variants[DataPlane]

// eachPlane runs test once on each data plane this system has, as subtests named for the
// plane; helpers that build a Server ask planeOf for it.
// On Linux that includes the sockmap plane twice: with the default promotion age, and with
// every connection promoted at once. Without the kernel support or the privilege those skip
// with a message, or fail when FULCRUM_REQUIRE_SOCKMAP=1 (CI has both).
func eachPlane(t *testing.T, test func(t *testing.T)) {
	planes.Each(t, testPlanes(), func(t *testing.T) {
		if p := planeOf(t); p == PlaneSockmap || p == planeSockmapNow {
			requireSockmap(t)
		}
		test(t)
	})
}

// testPlanes are the planes eachPlane runs a test on.
func testPlanes() []DataPlane {
	if runtime.GOOS != "linux" {
		return Planes()
	}
	return append(Planes(), PlaneSockmap, planeSockmapNow)
}

var sockmapCheck = sync.OnceValue(CheckSockmap)

// requireSockmap skips t when this system cannot run the sockmap plane, saying why; with
// FULCRUM_REQUIRE_SOCKMAP=1 it fails instead.
func requireSockmap(t testing.TB) {
	t.Helper()
	err := sockmapCheck()
	if err == nil {
		return
	}
	if os.Getenv("FULCRUM_REQUIRE_SOCKMAP") == "1" {
		t.Fatalf("the sockmap plane is required here: %v", err)
	}
	t.Skipf("skipping the sockmap plane: %v", err)
}

// planeOf is the plane of the eachPlane subtest t runs in (or under); goroutine outside one.
func planeOf(t *testing.T) DataPlane {
	if p, ok := planes.Of(t); ok {
		return p
	}
	return PlaneGoroutine
}

// EachPlane and PlaneOf serve the external tests (package listener_test) too.
var EachPlane, PlaneOf = eachPlane, planeOf
