package main

import (
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/listener"
)

// eachPlane runs test once on each data plane this system has, as subtests named for the
// plane; the helpers that start serve pass the plane on with planeArgs.
func eachPlane(t *testing.T, test func(t *testing.T)) {
	for _, p := range listener.Planes() {
		t.Run(string(p), test)
	}
}

// planeArgs are the serve flags that choose the plane of the eachPlane subtest t runs in (or
// under); none outside one, which leaves serve's default.
func planeArgs(t *testing.T) []string {
	for _, part := range strings.Split(t.Name(), "/") {
		if p, err := listener.ParseDataPlane(part); err == nil {
			return []string{"--data-plane", string(p)}
		}
	}
	return nil
}
