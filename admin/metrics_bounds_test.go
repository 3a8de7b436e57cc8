package admin

import "testing"

// TestBackendBoundsAreServiceBounds: a backend's coarser buckets are some of its service's, so
// that the two families can be read side by side at the same le.
func TestBackendBoundsAreServiceBounds(t *testing.T) {
	fine := map[float64]bool{}
	for i := range durationBounds.Len() {
		fine[durationBounds.Seconds(i)] = true
	}
	for i := range backendDurationBounds.Len() {
		if le := backendDurationBounds.Seconds(i); !fine[le] {
			t.Errorf("backend bound %v s is not a service bound", le)
		}
	}
}
