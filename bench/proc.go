package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RaiseFileLimit lifts this process's soft RLIMIT_NOFILE to its hard limit and returns the
// new soft limit. Go raises its own soft limit at start already, but gives the children it
// execs the limit it started with unless the program sets the limit itself: setting it here,
// even to the value it has, makes HAProxy and nginx inherit the raised limit too.
func RaiseFileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
}

// fileLimit is process pid's soft open-file limit, read from /proc/PID/limits.
func fileLimit(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: read limits: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if !strings.HasPrefix(line, "Max open files") {
			continue
		}
		f := strings.Fields(strings.TrimPrefix(line, "Max open files"))
		if len(f) < 1 {
			break
		}
		if f[0] == "unlimited" {
			return 1 << 30, nil
		}
		return strconv.Atoi(f[0])
	}
	return 0, fmt.Errorf("bench: no open-file limit in /proc/%d/limits", pid)
}

// treeRSS is the resident memory, in bytes, of pid and all its descendants (nginx's workers,
// for instance). Shared pages count once per process, which cancels out in a growth figure.
func treeRSS(pid int) (int64, error) { return sumTree(pid, vmRSS) }

// sumTree adds read's figure for pid and all its descendants. pid's own must be read; a
// descendant that ended meanwhile counts nothing.
func sumTree[T int | int64 | time.Duration](pid int, read func(int) (T, error)) (T, error) {
	total, err := read(pid)
	if err != nil {
		return 0, err
	}
	for _, c := range children(pid) {
		if n, err := sumTree(c, read); err == nil {
			total += n
		}
	}
	return total, nil
}

func vmRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: rss: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest)) // "1234 kB"
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: rss of %d: %w", pid, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("bench: no VmRSS for process %d", pid)
}

// children lists pid's child processes (from every thread's children file).
func children(pid int) []int {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// freePort asks the kernel for a free loopback port. Another process may take it before the
// caller binds it; starting a peer retries on a fresh port when that happens.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bench: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// treeFDs counts the open descriptors of pid and its descendants.
func treeFDs(pid int) (int, error) { return sumTree(pid, fdCount) }

func fdCount(pid int) (int, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: count descriptors: %w", err)
	}
	return len(fds), nil
}
