package listener

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// child is a helper process: this test binary run again for one helper test, which the
// parent talks to by lines on its stdin and stdout. Closing its stdin ends it; the test's
// cleanup does that and waits for it.
type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// startChild runs the helper test named helper with env added to this process's environment.
func startChild(t *testing.T, helper string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+helper+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("child %s %v: %v", helper, env, err)
		}
	})
	return &child{cmd: cmd, in: in, out: bufio.NewScanner(out)}
}

// line returns the rest of the child's next output line that starts with prefix.
func (ch *child) line(t *testing.T, prefix string) string {
	t.Helper()
	for ch.out.Scan() {
		if s, ok := strings.CutPrefix(ch.out.Text(), prefix); ok {
			return s
		}
	}
	t.Fatalf("child ended before printing %q: %v", prefix, ch.out.Err())
	return ""
}
