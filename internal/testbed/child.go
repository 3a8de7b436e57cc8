package testbed

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Child is a helper process: this test binary run again, in a role its TestMain or a helper
// test picks by the environment. The parent talks to it by lines on its stdin and stdout;
// closing its stdin ends it (it must then exit 0). The test's cleanup does that, waits for it
// and fails the test if it exited otherwise, unless Kill ended it.
type Child struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	killed bool
	done   chan struct{} // closed once Wait has returned
	err    error         // Wait's result, once done is closed
	once   sync.Once     // makes Stop safe to call twice
}

// StartChild runs this test binary with testArgs (such as "-test.run=^TestHelper$") and env
// added to this process's environment.
func StartChild(t testing.TB, env []string, testArgs ...string) *Child {
	t.Helper()
	cmd := exec.Command(os.Args[0], testArgs...)
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
	ch := &Child{cmd: cmd, in: in, out: bufio.NewScanner(out), done: make(chan struct{})}
	t.Cleanup(func() {
		ch.Stop()
		if ch.err != nil && !ch.killed {
			t.Errorf("child %v %v: %v", testArgs, env, ch.err)
		}
	})
	return ch
}

// In is the child's standard input.
func (ch *Child) In() io.Writer { return ch.in }

// Line returns the rest of the child's next output line that starts with prefix; earlier
// lines are skipped.
func (ch *Child) Line(t testing.TB, prefix string) string {
	t.Helper()
	for ch.out.Scan() {
		if s, ok := strings.CutPrefix(ch.out.Text(), prefix); ok {
			return s
		}
	}
	t.Fatalf("child ended before printing %q: %v", prefix, ch.out.Err())
	return ""
}

// PID is the child's process id.
func (ch *Child) PID() int { return ch.cmd.Process.Pid }

// Cmd is the child's command, to read its Process; Stop and Kill wait for it.
func (ch *Child) Cmd() *exec.Cmd { return ch.cmd }

// Kill ends the child with SIGKILL, as a crash would, and waits for it.
func (ch *Child) Kill() {
	ch.killed = true
	ch.cmd.Process.Kill()
	ch.Stop()
}

// Stop closes the child's stdin and waits for it to exit: 10 s, then it is killed. Its output
// left unread is discarded. It is safe to call twice.
func (ch *Child) Stop() {
	ch.once.Do(func() {
		ch.in.Close()
		go func() {
			for ch.out.Scan() { // lets a child blocked on a full pipe go on; Wait closes the pipe
			}
			ch.err = ch.cmd.Wait()
			close(ch.done)
		}()
	})
	select {
	case <-ch.done:
	case <-time.After(10 * time.Second): // the test's cleanup reports it: the child did not end
		ch.cmd.Process.Kill()
		<-ch.done
	}
}
