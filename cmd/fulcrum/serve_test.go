package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/testbed"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// fulcrumBinary builds the command once per test run.
func fulcrumBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fulcrum-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "fulcrum")
		out, err := exec.Command("go", "build", "-race", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func freePort(t *testing.T) int { return testbed.FreePort(t) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testbed.Eventually(t, 20*time.Second, what, cond)
}

// syncBuffer is a bytes.Buffer that the process's stderr copier and the test may share.
type syncBuffer = testbed.SyncBuffer

// instance is a fulcrum process started by a test.
type instance struct {
	cmd         *exec.Cmd
	listen, api string
	stderr      *syncBuffer
	exited      chan struct{}
	exitErr     error
}

func startFulcrum(t *testing.T, env []string, args ...string) *instance {
	t.Helper()
	in := &instance{
		listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		api:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		stderr: &syncBuffer{},
		exited: make(chan struct{}),
	}
	in.cmd = exec.Command(fulcrumBinary(t), slices.Concat([]string{"serve"}, serveTestArgs(t, args), args)...)
	in.cmd.Env = append(os.Environ(), "FULCRUM_LISTEN="+in.listen, "FULCRUM_ADMIN="+in.api)
	in.cmd.Env = append(in.cmd.Env, env...)
	in.cmd.Stderr = in.stderr
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { in.exitErr = in.cmd.Wait(); close(in.exited) }()
	t.Cleanup(func() {
		in.cmd.Process.Kill()
		<-in.exited
		if t.Failed() {
			t.Logf("fulcrum stderr:\n%s", in.stderr)
		}
	})
	waitFor(t, "admin healthz", func() bool {
		resp, err := http.Get("http://" + in.api + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	return in
}

func (in *instance) admin(t *testing.T, path string) map[string]any {
	t.Helper()
	resp, err := http.Get("http://" + in.api + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func (in *instance) states(t *testing.T) map[string]string {
	m := map[string]string{}
	for _, s := range in.admin(t, "/upstream/status")["servers"].([]any) {
		e := s.(map[string]any)
		m[fmt.Sprintf("%v:%v", e["host"], e["port"])] = e["state"].(string)
	}
	return m
}

func roundTrip(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "hello"); err != nil {
		return err
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "hello" {
		return fmt.Errorf("echo %q", buf)
	}
	return nil
}

func TestHeartbeatExpiryAndRevivalEndToEnd(t *testing.T) {
	eachPlane(t, testHeartbeatExpiryAndRevivalEndToEnd)
}

func testHeartbeatExpiryAndRevivalEndToEnd(t *testing.T) {
	port := startBackend(t, echoHandler).Port()
	// No sweep may land inside the test: it would forget the expired backend the test reads.
	in := startFulcrum(t, []string{"FULCRUM_TTL=1s"}, "--sweep-interval", "1h")
	key := fmt.Sprintf("127.0.0.1:%d", port)
	if r := in.admin(t, fmt.Sprintf("/upstream/add?port=%d", port)); r["server"] != key {
		t.Fatalf("add: %v", r)
	}
	if err := roundTrip(in.listen); err != nil {
		t.Fatalf("through fulcrum: %v", err)
	}
	waitFor(t, "backend expired", func() bool { return in.states(t)[key] == "expired" })
	if err := roundTrip(in.listen); err == nil {
		t.Fatal("an expired backend still served a new connection")
	}
	in.admin(t, fmt.Sprintf("/upstream/add?port=%d", port))
	if st := in.states(t)[key]; st != "up" {
		t.Fatalf("after a heartbeat state is %q, want up", st)
	}
	if err := roundTrip(in.listen); err != nil {
		t.Fatalf("revived backend: %v", err)
	}
}

func TestStaticBackendAndSweep(t *testing.T) { eachPlane(t, testStaticBackendAndSweep) }

func testStaticBackendAndSweep(t *testing.T) {
	static := startBackend(t, echoHandler).Port()
	dynamic := startBackend(t, echoHandler).Port()
	in := startFulcrum(t, nil, "--backend", fmt.Sprintf("127.0.0.1:%d", static), "--ttl", "300ms", "--sweep-interval", "50ms")
	in.admin(t, fmt.Sprintf("/upstream/add?port=%d", dynamic))
	waitFor(t, "expired backend swept", func() bool { return len(in.states(t)) == 1 })
	if st := in.states(t)[fmt.Sprintf("127.0.0.1:%d", static)]; st != "static" {
		t.Fatalf("static backend state %q", st)
	}
	if err := roundTrip(in.listen); err != nil {
		t.Fatal(err)
	}
}

func TestSIGTERMDrainsInFlightTransferAndExitsZero(t *testing.T) {
	eachPlane(t, testSIGTERMDrainsInFlightTransferAndExitsZero)
}

func testSIGTERMDrainsInFlightTransferAndExitsZero(t *testing.T) {
	// A backend that sends half its reply, waits for the signal to have been delivered, then
	// sends the rest.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	goOn := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write(bytes.Repeat([]byte("a"), 1000))
		<-goOn
		c.Write(bytes.Repeat([]byte("b"), 1000))
	}()
	in := startFulcrum(t, nil, "--backend", ln.Addr().String(), "--drain-timeout", "30s")
	c, err := net.Dial("tcp", in.listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.ReadFull(c, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	in.cmd.Process.Signal(syscall.SIGTERM)
	waitFor(t, "drain started", func() bool { return strings.Contains(in.stderr.String(), "draining") })
	close(goOn)
	rest, err := io.ReadAll(c)
	if err != nil || len(rest) != 1000 {
		t.Fatalf("after SIGTERM got %d bytes, %v; want the remaining 1000", len(rest), err)
	}
	c.Close()
	select {
	case <-in.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("fulcrum did not exit after its last connection ended")
	}
	if in.exitErr != nil {
		t.Fatalf("exit: %v, want status 0", in.exitErr)
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"serve", "--help"}, {"--version"}} {
		out, err := exec.Command(fulcrumBinary(t), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("fulcrum %v: %v\n%s", args, err, out)
		}
		if len(out) == 0 {
			t.Fatalf("fulcrum %v printed nothing", args)
		}
	}
	out, _ := exec.Command(fulcrumBinary(t), "serve", "--help").CombinedOutput()
	for _, flag := range []string{"--listen", "--admin", "--ttl", "--sweep-interval", "--backend",
		"--connect-timeout", "--retries", "--drain-timeout", "--log-level", "--log-format", "--balance", "--trusted-proxy"} {
		if !strings.Contains(string(out), flag) {
			t.Errorf("serve --help lacks %s", flag)
		}
	}
}

func TestBadFlagsFailClearly(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--backend", "nonsense"},
		{"serve", "--balance", "random"},
		{"serve", "--log-format", "xml"},
		{"serve", "--trusted-proxy", "10.0.0.0/99"},
		{"serve", "--retries", "-1"},
	} {
		out, err := exec.Command(fulcrumBinary(t), args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "fulcrum:") {
			t.Errorf("fulcrum %v: err=%v out=%s; want a clear failure", args, err, out)
		}
	}
}
