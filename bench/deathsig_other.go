//go:build !linux

package bench

import "os/exec"

// dieWithParent does nothing where the kernel cannot kill a child with its parent: the
// bench stops its children itself on every normal exit.
func dieWithParent(*exec.Cmd) {}
