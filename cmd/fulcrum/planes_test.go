package main

import (
	"runtime"
	"testing"

	"github.com/fulcrumlb/fulcrum/internal/testbed"
	"github.com/fulcrumlb/fulcrum/listener"
)

// planes remembers the plane of each eachPlane subtest.
var planes testbed.Variants[listener.DataPlane]

// eachPlane runs test once on each data plane this system has, as subtests named for the
// plane; the helpers that start serve pass the plane on with planeArgs. On Linux that
// includes the sockmap plane (its default promotion age), which skips with a message where
// the kernel support or the privilege is missing (FULCRUM_REQUIRE_SOCKMAP=1: fails).
func eachPlane(t *testing.T, test func(t *testing.T)) {
	ps := listener.Planes()
	if runtime.GOOS == "linux" {
		ps = append(ps, listener.PlaneSockmap)
	}
	planes.Each(t, ps, func(t *testing.T) {
		if p, _ := planes.Of(t); p == listener.PlaneSockmap {
			requireSockmap(t)
		}
		test(t)
	})
}

// planeArgs are the serve flags that choose the plane of the eachPlane subtest t runs in (or
// under); none outside one, which leaves serve's default.
func planeArgs(t *testing.T) []string {
	if p, ok := planes.Of(t); ok {
		return []string{"--data-plane", string(p)}
	}
	return nil
}
