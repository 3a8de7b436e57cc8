//go:build !unix

package pool_test

import "time"

// processCPU is unknown here: -1 leaves cpu-ns/op out of benchmark reports.
func processCPU() time.Duration { return -1 }
