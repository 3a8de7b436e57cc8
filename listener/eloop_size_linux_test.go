//go:build linux

package listener

import (
	"testing"
	"unsafe"
)

// TestConnStateFitsItsSizeClass: every connection keeps a loopConn, and every promoted one a
// sockmapConn too, for as long as it lives, so their sizes are what an idle connection costs
// (the bench's idle scenario: RSS per connection). Each is held at the top of a Go size
// class; a field that pushes one over costs every connection the next class, so it must be
// a decision, made here.
func TestConnStateFitsItsSizeClass(t *testing.T) {
	for _, s := range []struct {
		name      string
		size, max uintptr
	}{
		{"loopConn", unsafe.Sizeof(loopConn{}), 576},
		{"sockmapConn", unsafe.Sizeof(sockmapConn{}), 128},
	} {
		if s.size > s.max {
			t.Errorf("%s is %d bytes, over its %d-byte size class", s.name, s.size, s.max)
		}
	}
}
