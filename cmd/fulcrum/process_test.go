package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/pool"
)

// Tests that run the real fulcrum binary as child processes and signal them.

// opsBuildFulcrum returns the binary built once in TestMain.
func opsBuildFulcrum(t *testing.T) string {
	t.Helper()
	needBinary(t)
	return fulcrumBin
}

// opsProc is a running fulcrum child process.
type opsProc struct {
	cmd    *exec.Cmd
	stderr syncBuffer
	done   chan struct{}
	err    error
}

func opsStart(t *testing.T, bin string, env []string, args ...string) *opsProc {
	t.Helper()
	if len(args) > 0 && args[0] == "serve" {
		args = slices.Concat(args[:1], serveTestArgs(t, args[1:]), args[1:])
	}
	p := &opsProc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stderr, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("fulcrum %s output:\n%s", strings.Join(args, " "), p.stderr.String())
		}
	})
	return p
}

// stop sends sig and returns the exit code.
func (p *opsProc) stop(t *testing.T, sig os.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return p.wait(t)
}

func (p *opsProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("fulcrum did not exit; output:\n%s", p.stderr.String())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
	return 0
}

func backendStatus(p *pool.Pool, key string) (pool.Status, bool) {
	for _, s := range p.Snapshot() {
		if s.Key == key {
			return s, true
		}
	}
	return pool.Status{}, false
}

func TestFulcrumProcesses(t *testing.T) {
	bin := opsBuildFulcrum(t)
	t.Run("heartbeat registers, beats, deregisters on SIGTERM", func(t *testing.T) { testHeartbeatCycle(t, bin, syscall.SIGTERM, "") })
	t.Run("heartbeat deregisters on SIGINT", func(t *testing.T) { testHeartbeatCycle(t, bin, syscall.SIGINT, "10.1.2.3") })
	t.Run("heartbeat retries with backoff while unreachable", func(t *testing.T) { testHeartbeatRetries(t, bin) })
	t.Run("heartbeat refused for good exits non-zero", func(t *testing.T) {
		ta := startTestAdmin(t)
		p := opsStart(t, bin, nil, "heartbeat", "--admin", ta.URL, "--host", "bad_host", "--port", "8080")
		if code := p.wait(t); code != 1 || !strings.Contains(p.stderr.String(), "400 Bad Request") {
			t.Errorf("exit %d, output %q: want 1 and the API's 400", code, p.stderr.String())
		}
	})
	t.Run("client error exits non-zero", func(t *testing.T) {
		ta := startTestAdmin(t)
		p := opsStart(t, bin, []string{"FULCRUM_ADMIN_URL=" + ta.URL}, "remove", "--host", "10.0.0.1", "--port", "1")
		if code := p.wait(t); code != 1 || !strings.Contains(p.stderr.String(), "fulcrum: remove: ") || !strings.Contains(p.stderr.String(), "is not registered") {
			t.Errorf("exit %d, output %q", code, p.stderr.String())
		}
	})
	t.Run("serve from a config file, PROXY header out, access log", func(t *testing.T) {
		eachPlane(t, func(t *testing.T) { testServeOperating(t, bin) })
	})
	t.Run("PROXY path still splices", func(t *testing.T) {
		eachPlane(t, func(t *testing.T) { testProxySplices(t, bin) })
	})
}

func testHeartbeatCycle(t *testing.T, bin string, sig os.Signal, host string) {
	ta := startTestAdmin(t)
	args := []string{"heartbeat", "--port", "8080", "--weight", "2", "--interval", "300ms"}
	key := "127.0.0.1:8080" // no --host: the address the balancer sees the agent call from
	if host != "" {
		args = append(args, "--host", host)
		key = host + ":8080"
	}
	p := opsStart(t, bin, []string{"FULCRUM_ADMIN_URL=" + ta.URL, "FULCRUM_ADMIN_TOKEN=tok"}, args...)
	waitFor(t, "registration", func() bool { _, ok := backendStatus(ta.pool, key); return ok })
	st, _ := backendStatus(ta.pool, key)
	if st.Weight != 2 || st.State != pool.StateUp {
		t.Errorf("registered as %+v", st)
	}
	last := st.LastHeartbeat
	for i := 0; i < 2; i++ { // two more heartbeats
		waitFor(t, "a heartbeat", func() bool { s, _ := backendStatus(ta.pool, key); return s.LastHeartbeat.After(last) })
		s, _ := backendStatus(ta.pool, key)
		last = s.LastHeartbeat
	}
	if code := p.stop(t, sig); code != 0 {
		t.Fatalf("exit code %d after %v", code, sig)
	}
	if _, ok := backendStatus(ta.pool, key); ok {
		t.Errorf("%s still registered after %v", key, sig)
	}
	if !strings.Contains(p.stderr.String(), "deregistered") {
		t.Errorf("no deregistration logged:\n%s", p.stderr.String())
	}
	for _, h := range ta.authHeaders() {
		if h != "Bearer tok" {
			t.Fatalf("Authorization %q, want the FULCRUM_ADMIN_TOKEN", h)
		}
	}
}

var retryIn = regexp.MustCompile(`retry_in=(\S+)`)

func testHeartbeatRetries(t *testing.T, bin string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there until the balancer "comes back"
	p := opsStart(t, bin, nil, "heartbeat", "--admin", "http://"+addr, "--port", "9000", "--host", "10.0.0.9", "--interval", "5s")
	waitFor(t, "three retries", func() bool { return len(retryIn.FindAllString(p.stderr.String(), -1)) >= 3 })
	var waits []time.Duration
	for _, m := range retryIn.FindAllStringSubmatch(p.stderr.String(), 3) {
		d, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatal(err)
		}
		waits = append(waits, d)
	}
	if !(waits[0] < waits[2]) || waits[2] > 5*time.Second {
		t.Errorf("retry waits %v: want them growing, within the interval", waits)
	}

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	pl := &pool.Pool{Logger: quiet}
	srv := &http.Server{Handler: (&admin.API{Registry: pl, Logger: quiet}).Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	waitFor(t, "registration once the balancer is back", func() bool { _, ok := backendStatus(pl, "10.0.0.9:9000"); return ok })
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if n := pl.Len(); n != 0 {
		t.Errorf("%d backends left after SIGTERM", n)
	}
}

// ppEchoBackend parses a PROXY header, sends its source address back in a line, then echoes.
func ppEchoBackend(t *testing.T) *backend {
	t.Helper()
	return startBackend(t, func(c net.Conn) error {
		defer c.Close()
		br := bufio.NewReader(c)
		h, err := proxyproto.Read(br)
		if err != nil {
			fmt.Fprintf(c, "no header: %v\n", err)
			return err
		}
		fmt.Fprintf(c, "%s\n", h.SourceAddr)
		io.Copy(c, br)
		return c.(*net.TCPConn).CloseWrite()
	})
}

var servingAddrs = regexp.MustCompile(`fulcrum serving"? listen=(\S+) admin=(\S+)`)

func testServeOperating(t *testing.T, bin string) {
	dir := t.TempDir()
	accessLog := filepath.Join(dir, "access.log")
	config := filepath.Join(dir, "fulcrum.yaml")
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("t0ken\n"), 0o600)
	os.WriteFile(config, []byte(fmt.Sprintf("listen: \"127.0.0.1:0\"\nadmin: \"127.0.0.1:0\"\nttl: 30s\nproxy-protocol: v2\naccess-log: %q\ndrain-timeout: 5s\nadmin-token-file: %q\n", accessLog, tokenFile)), 0o600)
	serve := opsStart(t, bin, nil, "serve", "--config", config)
	var m []string
	waitFor(t, "serve to start", func() bool { m = servingAddrs.FindStringSubmatch(serve.stderr.String()); return m != nil })
	listen, adminAddr := m[1], m[2]

	be := ppEchoBackend(t)
	port := fmt.Sprint(be.Port())
	// Without the token the balancer refuses the agent for good; with it, the agent registers.
	refused := opsStart(t, bin, []string{"FULCRUM_ADMIN_URL=http://" + adminAddr}, "heartbeat", "--host", "127.0.0.1", "--port", port)
	if code := refused.wait(t); code != 1 || !strings.Contains(refused.stderr.String(), "401 Unauthorized") {
		t.Errorf("agent without the token: exit %d, output %q", code, refused.stderr.String())
	}
	agent := opsStart(t, bin, []string{"FULCRUM_ADMIN_URL=http://" + adminAddr, "FULCRUM_ADMIN_TOKEN=t0ken"}, "heartbeat", "--host", "127.0.0.1", "--port", port, "--interval", "1s")
	waitFor(t, "the agent to register", func() bool { return strings.Contains(agent.stderr.String(), "registered") })

	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	c.Write([]byte("hi"))
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(c)
	if want := c.LocalAddr().String() + "\nhi"; string(got) != want {
		t.Fatalf("through fulcrum: %q, want %q (the backend's view of the PROXY source, then the echo)", got, want)
	}

	var line map[string]any
	waitFor(t, "an access log line", func() bool {
		b, _ := os.ReadFile(accessLog)
		return json.Unmarshal(bytes.TrimSpace(b), &line) == nil
	})
	if line["client"] != c.LocalAddr().String() || line["backend"] != "127.0.0.1:"+port || line["bytes_up"] != 2.0 || line["end"] != "eof" {
		t.Errorf("access log line %v", line)
	}
	out, err := opsRunCLI(t, "status", "--admin", adminAddr)
	if err != nil || !regexp.MustCompile(`127\.0\.0\.1:`+port+`\s+up\s+1\s+0\s+1\s`).MatchString(out) {
		t.Errorf("status: %v\n%s", err, out)
	}
	if code := agent.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("agent exit %d", code)
	}
	if code := serve.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("serve exit %d", code)
	}
}

// testProxySplices runs serve under strace with a PROXY header read from the client and one
// written to the backend, and checks that the payload still moved by splice(2): nothing on the
// path may wrap the sockets. Only the bytes the header reader buffered past the header, and the
// reads of a bulk transfer that come in below the 16 KiB splice threshold, are copied the
// ordinary way: at least 95% must go by splice (a wrapper makes it 0).
func testProxySplices(t *testing.T, bin string) {
	straceBin, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace not installed (apt-get install -y strace): splice not checked")
	}
	trace := filepath.Join(t.TempDir(), "strace.out")
	be := ppEchoBackend(t)
	args := slices.Concat([]string{"-f", "-e", "trace=splice", "-o", trace, bin, "serve"}, serveTestArgs(t, nil),
		[]string{"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--backend", be.Addr(),
			"--proxy-protocol", "v2", "--accept-proxy-protocol", "127.0.0.0/8"})
	p := opsStart(t, straceBin, nil, args...)
	var m []string
	waitFor(t, "serve to start under strace", func() bool {
		select {
		case <-p.done: // strace could not start it, e.g. ptrace is not permitted here
			t.Skipf("strace failed: %v\n%s", p.err, p.stderr.String())
		default:
		}
		m = servingAddrs.FindStringSubmatch(p.stderr.String())
		return m != nil
	})

	const size = 4 << 20
	payload := make([]byte, size)
	rand.Read(payload)
	c, err := net.Dial("tcp", m[1])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	go func() {
		c.Write(append([]byte("PROXY TCP4 203.0.113.7 192.0.2.1 4321 443\r\n"), payload...))
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if want := append([]byte("203.0.113.7:4321\n"), payload...); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("through fulcrum: %d bytes, %v; want the header's client and the %d-byte echo", len(got), err, size)
	}
	c.Close()

	fulcrumPID := straceChild(t, p.cmd.Process.Pid)
	if err := syscall.Kill(fulcrumPID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("serve under strace exited %d", code)
	}
	if spliced := splicedBytes(t, trace); spliced < 2*size*95/100 {
		t.Errorf("splice(2) moved %d bytes of the 2 × %d proxied: the path no longer splices", spliced, size)
	}
}

// straceChild is the pid of the process strace started.
func straceChild(t *testing.T, stracePID int) int {
	t.Helper()
	var pid int
	waitFor(t, "strace's child", func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", stracePID, stracePID))
		_, err := fmt.Sscan(string(b), &pid)
		return err == nil
	})
	return pid
}

// splicedBytes adds up what the splice calls in an strace log returned (whole calls and
// "<... splice resumed>" ends alike); each byte goes through a pipe, socket → pipe and
// pipe → socket, so the sum is halved.
func splicedBytes(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, m := range regexp.MustCompile(`(?m)^.*splice.*\)\s+= (\d+)$`).FindAllSubmatch(b, -1) {
		var n int64
		fmt.Sscan(string(m[1]), &n)
		total += n
	}
	return total / 2
}
