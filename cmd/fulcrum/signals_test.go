package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifySocket binds a unixgram socket where fulcrum's systemd notifications arrive, sets
// NOTIFY_SOCKET for the processes the test starts, and returns the messages as they come.
func notifySocket(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	msgs := make(chan string, 100)
	done := make(chan struct{})
	go func() { // ends when the socket is closed at cleanup
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return msgs
}

func nextNotify(t *testing.T, msgs <-chan string, want string) {
	t.Helper()
	select {
	case m := <-msgs:
		if m != want {
			t.Fatalf("systemd notification %q, want %q", m, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no systemd notification; want %q", want)
	}
}

// TestSystemdNotify: READY=1 once serving; on SIGHUP RELOADING=1 from the old process and
// MAINPID=<new pid> with READY=1 from the successor once it serves (the old one drains without
// STOPPING=1, which would stop the unit); STOPPING=1 when a SIGTERM starts the drain.
func TestSystemdNotify(t *testing.T) {
	msgs := notifySocket(t)
	pidFile := filepath.Join(t.TempDir(), "fulcrum.pid")
	b := startBalancer(t, "--pid-file", pidFile, "--drain-timeout", "5s")
	t.Cleanup(func() { stopNewest(t, pidFile) })
	nextNotify(t, msgs, "READY=1")

	old := b.pid()
	eventually(t, 10*time.Second, "the PID file names the balancer", func() bool { return readPID(pidFile) == old })
	if err := syscall.Kill(old, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	nextNotify(t, msgs, "RELOADING=1")
	eventually(t, 20*time.Second, "the successor ready and the old process gone", func() bool {
		return readPID(pidFile) != old && !alive(old)
	})
	successor := readPID(pidFile)
	nextNotify(t, msgs, fmt.Sprintf("MAINPID=%d\nREADY=1", successor))
	select {
	case m := <-msgs:
		t.Fatalf("the old process, draining after the hand-over, sent %q", m)
	default:
	}

	if err := syscall.Kill(successor, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	nextNotify(t, msgs, "STOPPING=1")
	eventually(t, 20*time.Second, "the successor to exit", func() bool { return !alive(successor) })
}

// TestSecondSignalStopsTheDrainAtOnce: a second SIGTERM during a long drain resets the open
// connections and exits 1 at once.
func TestSecondSignalStopsTheDrainAtOnce(t *testing.T) {
	g := startBackend(t, serveXfer)
	b := startBalancer(t, "--backend", g.Addr(), "--drain-timeout", "10m")
	clients := halfSentTransfers(t, b.listen, 3)
	eventually(t, 10*time.Second, "three connections", func() bool { return activeConns(t, b.admn) == 3 })
	if err := syscall.Kill(b.pid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the drain to start", func() bool { return strings.Contains(b.log(), "shutting down: draining") })
	if b.exited() {
		t.Fatal("exited on the first signal with connections open and a 10m drain")
	}
	if err := syscall.Kill(b.pid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.done:
	case <-time.After(20 * time.Second):
		t.Fatal("a second SIGTERM did not end the drain")
	}
	var ee interface{ ExitCode() int }
	if !errors.As(b.err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("exit %v, want status 1", b.err)
	}
	if !strings.Contains(b.log(), "second signal during the drain: stopped at once") {
		t.Errorf("no message about the second signal:\n%s", tail(b.log(), 2048))
	}
	for i, x := range clients {
		x.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.ReadAll(x.c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("connection %d still open after the hard stop", i)
		}
	}
}

// TestSIGUSR1ReopensAccessLog: after logrotate renames the access log, SIGUSR1 makes fulcrum
// write the next lines to a new file at the path.
func TestSIGUSR1ReopensAccessLog(t *testing.T) {
	g := startBackend(t, echoHandler)
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	b := startBalancer(t, "--backend", g.Addr(), "--access-log", path)
	lines := func(p string) int {
		data, _ := os.ReadFile(p)
		return strings.Count(string(data), "\n")
	}
	oneConn := func() {
		t.Helper()
		c, err := net.Dial("tcp", b.listen)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("hi"))
		c.(*net.TCPConn).CloseWrite()
		io.ReadAll(c)
		c.Close()
	}
	oneConn()
	eventually(t, 10*time.Second, "the first access log line", func() bool { return lines(path) == 1 })
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(b.pid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the reopen", func() bool { return strings.Contains(b.log(), "access log reopened") })
	oneConn()
	eventually(t, 10*time.Second, "a line in the new file", func() bool { return lines(path) == 1 })
	if n := lines(rotated); n != 1 {
		t.Errorf("the rotated file has %d lines, want 1 (the line before the reopen)", n)
	}
}

// TestSIGHUPReloadsConfig: the successor of a SIGHUP upgrade reads --config again, so a SIGHUP
// is a config reload too; a config that does not load keeps the old process serving.
func TestSIGHUPReloadsConfig(t *testing.T) {
	dir := t.TempDir()
	config, pidFile := filepath.Join(dir, "fulcrum.yaml"), filepath.Join(dir, "fulcrum.pid")
	os.WriteFile(config, []byte("balance: leastconn\n"), 0o600)
	b := startBalancer(t, "--config", config, "--pid-file", pidFile)
	t.Cleanup(func() { stopNewest(t, pidFile) })
	balance := func() string {
		body, _, err := adminGet(b.admn, "/upstream/status")
		if err != nil {
			return err.Error()
		}
		return string(body)
	}
	if !strings.Contains(balance(), `"balance":"leastconn"`) {
		t.Fatalf("status before: %s", balance())
	}
	old := b.pid()
	eventually(t, 10*time.Second, "the PID file", func() bool { return readPID(pidFile) == old })

	os.WriteFile(config, []byte("balance: random\n"), 0o600)
	syscall.Kill(old, syscall.SIGHUP)
	eventually(t, 30*time.Second, "the failed upgrade", func() bool { return strings.Contains(b.log(), "upgrade failed; still serving") })
	if !strings.Contains(b.log(), `unknown balance policy "random"`) {
		t.Errorf("the successor's refusal is not in the log:\n%s", tail(b.log(), 2048))
	}
	if _, code, err := adminGet(b.admn, "/healthz"); err != nil || code != 200 || readPID(pidFile) != old || b.exited() {
		t.Fatalf("after a bad config: healthz %d %v, pid file %d (old %d), exited %v", code, err, readPID(pidFile), old, b.exited())
	}

	os.WriteFile(config, []byte("balance: maglev\n"), 0o600)
	syscall.Kill(old, syscall.SIGHUP)
	eventually(t, 30*time.Second, "the upgrade", func() bool { return readPID(pidFile) != old && !alive(old) })
	if !strings.Contains(balance(), `"balance":"maglev"`) {
		t.Errorf("status after the reload: %s; want the config file's new policy", balance())
	}
}

// TestSIGTERMDuringHandoverDrainDrainsOn: the old process of an upgrade drains after the hand-
// over; a SIGTERM then (systemctl stop signals every process of the unit) is not a second
// signal: its connections still finish.
func TestSIGTERMDuringHandoverDrainDrainsOn(t *testing.T) {
	g := startBackend(t, serveXfer)
	pidFile := filepath.Join(t.TempDir(), "fulcrum.pid")
	b := startBalancer(t, "--backend", g.Addr(), "--pid-file", pidFile, "--drain-timeout", "1m")
	t.Cleanup(func() { stopNewest(t, pidFile) })
	clients := halfSentTransfers(t, b.listen, 2)
	old := b.pid()
	eventually(t, 10*time.Second, "the PID file", func() bool { return readPID(pidFile) == old })
	syscall.Kill(old, syscall.SIGHUP)
	eventually(t, 30*time.Second, "the successor", func() bool { return readPID(pidFile) != old })
	eventually(t, 10*time.Second, "the old process to drain", func() bool { return strings.Contains(b.log(), `"msg":"shutting down: draining connections"`) })
	syscall.Kill(old, syscall.SIGTERM)
	for i, x := range clients {
		if err := x.finish(); err != nil {
			t.Errorf("transfer %d through the draining process: %v", i, err)
		}
	}
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the old process did not exit once its connections ended")
	}
	if b.err != nil {
		t.Errorf("the old process exited with %v, want 0", b.err)
	}
}
