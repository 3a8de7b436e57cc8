package etcdtest

import (
	"bytes"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Node is one etcd member process. Its name, ports and data directory stay the same across
// restarts, so a restarted member rejoins with its data.
type Node struct {
	Name     string // member name, m0, m1, ...
	Endpoint string // client address, 127.0.0.1:PORT

	peerURL string
	dir     string      // the data directory and the log file
	args    []string    // command line, the same at every start
	tls     *tls.Config // how a client reaches it; nil: plain HTTP

	mu     sync.Mutex    // guards cmd and exited
	cmd    *exec.Cmd     // the running process; nil before the first start
	exited chan struct{} // closed when cmd has exited and been waited for
}

// stopTimeout is how long Stop waits after SIGTERM before SIGKILL; a leader may take about
// 7 s to hand over and exit.
const stopTimeout = 20 * time.Second

func (nd *Node) flags(initialCluster, token string, files *TLSFiles) []string {
	scheme := "http://"
	var secure []string
	if files != nil {
		scheme = "https://"
		secure = []string{"--cert-file", files.serverCert, "--key-file", files.serverKey,
			"--trusted-ca-file", files.CA, "--client-cert-auth"}
	}
	return append(secure,
		"--name", nd.Name,
		"--data-dir", filepath.Join(nd.dir, "data"),
		"--listen-client-urls", scheme+nd.Endpoint,
		"--advertise-client-urls", scheme+nd.Endpoint,
		"--listen-peer-urls", nd.peerURL,
		"--initial-advertise-peer-urls", nd.peerURL,
		"--initial-cluster", initialCluster,
		"--initial-cluster-token", token,
		"--initial-cluster-state", "new",
		"--logger", "zap",
		"--log-outputs", "stderr",
		"--log-level", "warn",
	)
}

// Start starts the member's process; it does not wait for health (Cluster.WaitHealthy does).
func (nd *Node) Start(t testing.TB) {
	t.Helper()
	log, err := os.OpenFile(filepath.Join(nd.dir, "etcd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("etcd member %s: log file: %v", nd.Name, err)
	}
	defer log.Close() // the child has its own copy
	cmd := exec.Command(Binary, nd.args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("etcd member %s: start: %v", nd.Name, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait() // the exit status of a killed member says nothing the test needs
		close(exited)
	}()
	nd.mu.Lock()
	nd.cmd, nd.exited = cmd, exited
	nd.mu.Unlock()
}

// PID is the running process's ID; 0 when the member is not running.
func (nd *Node) PID() int {
	cmd, _ := nd.proc()
	if cmd == nil || !nd.Running() {
		return 0
	}
	return cmd.Process.Pid
}

// Running reports whether the member's process is alive.
func (nd *Node) Running() bool {
	_, exited := nd.proc()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// Healthy reports whether the member answers /health with true.
func (nd *Node) Healthy() bool { return nd.Running() && healthy(nd.Endpoint, nd.tls) }

// Stop sends SIGTERM and waits for the exit, sending SIGKILL after stopTimeout. Stopping a
// member that is not running does nothing.
func (nd *Node) Stop(t testing.TB) {
	t.Helper()
	nd.signal(t, syscall.SIGTERM, stopTimeout)
}

// Kill sends SIGKILL and waits for the exit.
func (nd *Node) Kill(t testing.TB) {
	t.Helper()
	nd.signal(t, syscall.SIGKILL, stopTimeout)
}

func (nd *Node) signal(t testing.TB, sig syscall.Signal, wait time.Duration) {
	t.Helper()
	cmd, exited := nd.proc()
	if cmd == nil || !nd.Running() {
		return
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Logf("etcd member %s: %v: %v", nd.Name, sig, err)
	}
	select {
	case <-exited:
		return
	case <-time.After(wait):
	}
	t.Logf("etcd member %s: still running %s after %v: killing it", nd.Name, wait, sig)
	cmd.Process.Kill()
	<-exited
}

// status returns the member's ID and the leader it follows (0: none known), asked of the member.
func (nd *Node) status() (id, leader uint64, err error) { return status(nd.Endpoint, nd.tls) }

func (nd *Node) proc() (*exec.Cmd, chan struct{}) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.cmd, nd.exited
}

// logTail is the end of the member's log, for a failing test's output.
func (nd *Node) logTail() string {
	b, err := os.ReadFile(filepath.Join(nd.dir, "etcd.log"))
	if err != nil {
		return err.Error()
	}
	const keep = 4 << 10
	if len(b) > keep {
		b = b[len(b)-keep:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}
