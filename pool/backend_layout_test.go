package pool

import (
	"testing"
	"unsafe"
)

// TestBackendFillsWholeCacheLines: a pick at 100,000 backends is bound by cache misses, so the
// fields it touches sit in the first two lines of a line-aligned Backend. Adding a field
// changes the size: adjust the padding at the end of Backend so that this passes again.
func TestBackendFillsWholeCacheLines(t *testing.T) {
	const line = 64
	var b Backend
	if size := unsafe.Sizeof(b); size%line != 0 {
		t.Errorf("Backend is %d bytes, not a whole number of %d-byte lines", size, line)
	}
	hot := map[string]uintptr{
		"active":         unsafe.Offsetof(b.active),
		"lastHeartbeat":  unsafe.Offsetof(b.lastHeartbeat),
		"removed":        unsafe.Offsetof(b.removed),
		"total":          unsafe.Offsetof(b.total),
		"health.down":    unsafe.Offsetof(b.health) + unsafe.Offsetof(b.health.down),
		"health.atLimit": unsafe.Offsetof(b.health) + unsafe.Offsetof(b.health.atLimit),
	}
	for name, off := range hot {
		if off >= 2*line {
			t.Errorf("%s at offset %d: outside the first two cache lines", name, off)
		}
	}
}
