package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// echoHashed sends size random bytes through c while reading the echo back, and checks the
// SHA-256 of what came back against what was sent.
func echoHashed(c net.Conn, size int) error {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	data := make([]byte, size)
	rand.Read(data)
	wrote := make(chan error, 1)
	go func() { // ends when the write does: the deadline bounds it
		_, err := c.Write(data)
		wrote <- err
	}()
	got := sha256.New()
	_, rerr := io.CopyN(got, c, int64(size))
	if werr := <-wrote; werr != nil {
		return fmt.Errorf("write: %w", werr)
	}
	if rerr != nil {
		return fmt.Errorf("read the echo: %w", rerr)
	}
	if sum := sha256.Sum256(data); !bytes.Equal(got.Sum(nil), sum[:]) {
		return fmt.Errorf("the echo of %d bytes differs from what was sent", size)
	}
	return nil
}

// TestSockmapUpgradeLeavesPromotedConnectionsToTheOldProcess: on --data-plane sockmap, a
// SIGHUP upgrade leaves the connections in the kernel maps to finish in the old process:
// after the new process took over they still echo every byte (SHA-256 of 1 MiB each), the
// new process serves new connections (and counts only those), the old process stays while
// its promoted connections live and exits 0 once they end, before its drain timeout:
// nothing is cut.
func TestSockmapUpgradeLeavesPromotedConnectionsToTheOldProcess(t *testing.T) {
	requireSockmap(t)
	for _, c := range []struct {
		name string
		args []string
	}{{"at once", []string{"--sockmap-after", "0"}}, {"default age", nil}} {
		t.Run(c.name, func(t *testing.T) { testSockmapUpgrade(t, c.args) })
	}
}

func testSockmapUpgrade(t *testing.T, args []string) {
	const held, size = 4, 1 << 20
	be := startBackend(t, echoHandler)
	pidFile := filepath.Join(t.TempDir(), "fulcrum.pid")
	b := startBalancer(t, append([]string{"--data-plane", "sockmap", "--pid-file", pidFile, "--drain-timeout", "1m"}, args...)...)
	t.Cleanup(func() { stopNewest(t, pidFile) })
	addBackend(t, b.admn, be.Addr())
	old := b.pid()
	eventually(t, 10*time.Second, "the PID file names the balancer", func() bool { return readPID(pidFile) == old })

	var conns []net.Conn
	for range held {
		conns = append(conns, heldConn(t, b.listen))
	}
	promoteAll(t, b.admn, conns, held)

	if err := syscall.Kill(old, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the new process took over", func() bool {
		pid := readPID(pidFile)
		return pid != 0 && pid != old
	})
	successor := readPID(pidFile)
	// The admin port went to the successor: its status counts none of the old connections.
	waitSockmap(t, b.admn, sockmapCounts{}, "the new process's status before its first connection")
	fresh := successorConn(t, b.listen, b.admn)
	if err := echoHashed(fresh, size); err != nil {
		t.Fatalf("a new connection after the upgrade: %v", err)
	}
	eventually(t, 15*time.Second, "the new process counts its connection", func() bool {
		s := readSockmapStatus(t, b.admn).Sockmap
		echoOnce(t, fresh)
		return s != nil && s.Kernel+s.Relay == 1
	})

	for i, c := range conns {
		if err := echoHashed(c, size); err != nil {
			t.Fatalf("promoted connection %d after the upgrade: %v", i, err)
		}
	}
	if !alive(old) {
		t.Fatal("the old process exited while its promoted connections were open")
	}
	for i, c := range conns {
		echoOnce(t, c)
		c.(*net.TCPConn).CloseWrite()
		if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
			t.Fatalf("promoted connection %d: after its FIN, %d more bytes and %v; want the backend's FIN", i, len(rest), err)
		}
		c.Close()
		if i < held-1 && !alive(old) {
			t.Fatalf("the old process exited with %d promoted connections still open", held-1-i)
		}
	}
	select { // well before the drain timeout (1m): it waited for the connections, not the clock
	case <-b.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the old process is still running 20s after its last connection ended")
	}
	if b.err != nil {
		t.Fatalf("the old process exited with %v, want 0", b.err)
	}
	if strings.Contains(b.log(), "drain timeout") {
		t.Errorf("the old process cut connections at its drain timeout:\n%s", tail(b.log(), 4096))
	}
	if !alive(successor) || readPID(pidFile) != successor {
		t.Fatalf("the new process %d is gone after the old one exited", successor)
	}
	echoOnce(t, fresh)
}

// successorConn dials listen until the process whose admin API is admin, the successor,
// counts the connection. For a moment after the successor is ready the old process still
// holds the shared listening socket (its drain closes it) and may take a connection: that
// one is closed and another dialed.
func successorConn(t *testing.T, listen, admin string) net.Conn {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c := heldConn(t, listen)
		for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if s := readSockmapStatus(t, admin).Sockmap; s != nil && s.Kernel+s.Relay == 1 {
				return c
			}
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("not within 15s: the new process counts a new connection")
		}
	}
}
