package listener

import (
	"io"
	"os/exec"
	"testing"

	"github.com/fulcrumlb/fulcrum/internal/testbed"
)

// child is a helper process: this test binary run again for one helper test, which the
// parent talks to by lines on its stdin and stdout. Closing its stdin ends it; the test's
// cleanup does that and waits for it.
type child struct {
	*testbed.Child
	cmd *exec.Cmd
	in  io.Writer
}

// startChild runs the helper test named helper with env added to this process's environment.
func startChild(t *testing.T, helper string, env ...string) *child {
	t.Helper()
	ch := testbed.StartChild(t, env, "-test.run=^"+helper+"$", "-test.count=1")
	return &child{Child: ch, cmd: ch.Cmd(), in: ch.In()}
}

// line returns the rest of the child's next output line that starts with prefix.
func (ch *child) line(t *testing.T, prefix string) string {
	t.Helper()
	return ch.Line(t, prefix)
}
