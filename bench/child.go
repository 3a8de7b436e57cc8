package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// The backends child process speaks JSON lines: on start it prints {"addrs":[...]}; each
// "stats" line on its stdin gets a line with []BackendStats; EOF on stdin stops it.

type childHello struct {
	Addrs []string `json:"addrs"`
	Err   string   `json:"error,omitempty"`
}

// ServeBackends runs n backends (on ports, when given) for a parent process: it is the body of
// the hidden "fulcrum bench backends" command. It returns when in reaches EOF.
func ServeBackends(n int, ports []int, in io.Reader, out io.Writer) error {
	RaiseFileLimit()
	enc := json.NewEncoder(out)
	ss, err := StartBackends(n, ports)
	if err != nil {
		enc.Encode(childHello{Err: err.Error()})
		return err
	}
	defer ss.Close()
	if err := enc.Encode(childHello{Addrs: ss.Addrs()}); err != nil {
		return fmt.Errorf("bench backends: write hello: %w", err)
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if sc.Text() != "stats" {
			continue
		}
		st, _ := ss.Stats()
		if err := enc.Encode(st); err != nil {
			return fmt.Errorf("bench backends: write stats: %w", err)
		}
	}
	return sc.Err()
}

// ChildBackends are bench backends in a child process, so that the descriptors of their
// connections do not count against the bench's own open-file limit.
type ChildBackends struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	addrs []string
	mu    sync.Mutex // one stats request at a time
	once  sync.Once
	err   error
}

var _ Backends = (*ChildBackends)(nil)

// StartChildBackends runs exe with args (which must start ServeBackends, e.g. "bench",
// "backends", "--backends", "4") and waits for its addresses.
func StartChildBackends(exe string, args ...string) (*ChildBackends, error) {
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	dieWithParent(cmd) // never outlive the bench
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: backends child stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: backends child stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start backends child: %w", err)
	}
	cb := &ChildBackends{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	var hello childHello
	if err := cb.readLine(&hello, 30*time.Second); err != nil || hello.Err != "" {
		cb.Close()
		if err == nil {
			err = errors.New(hello.Err)
		}
		return nil, fmt.Errorf("bench: backends child: %w", err)
	}
	cb.addrs = hello.Addrs
	return cb, nil
}

// readLine decodes the child's next line, giving up after timeout (the child is then killed).
func (cb *ChildBackends) readLine(v any, timeout time.Duration) error {
	t := time.AfterFunc(timeout, func() { cb.cmd.Process.Kill() })
	defer t.Stop()
	line, err := cb.out.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	return json.Unmarshal(line, v)
}

// Addrs implements Backends.
func (cb *ChildBackends) Addrs() []string { return cb.addrs }

// Stats implements Backends.
func (cb *ChildBackends) Stats() ([]BackendStats, error) {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	if _, err := io.WriteString(cb.stdin, "stats\n"); err != nil {
		return nil, fmt.Errorf("bench: ask backends child: %w", err)
	}
	var st []BackendStats
	if err := cb.readLine(&st, 30*time.Second); err != nil {
		return nil, fmt.Errorf("bench: backends child stats: %w", err)
	}
	return st, nil
}

// PID implements Backends: the child's process id.
func (cb *ChildBackends) PID() int { return cb.cmd.Process.Pid }

// Close implements Backends: EOF on its stdin stops the child; it is killed if it lingers.
func (cb *ChildBackends) Close() error {
	cb.once.Do(func() {
		cb.stdin.Close()
		t := time.AfterFunc(10*time.Second, func() { cb.cmd.Process.Kill() })
		defer t.Stop()
		if err := cb.cmd.Wait(); err != nil {
			cb.err = fmt.Errorf("bench: backends child: %w", err)
		}
	})
	return cb.err
}
