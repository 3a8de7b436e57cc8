package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
	"github.com/urfave/cli/v2"
	"golang.org/x/time/rate"
)

func TestParseRate(t *testing.T) {
	cases := []struct {
		in    string
		rate  rate.Limit
		burst int
		bad   bool
	}{
		{in: "20/40", rate: 20, burst: 40},
		{in: "20", rate: 20, burst: 40},
		{in: "0.5/3", rate: 0.5, burst: 3},
		{in: "0.2", rate: 0.2, burst: 1},
		{in: "0"},
		{in: "off"},
		{in: "", bad: true},
		{in: "-1", bad: true},
		{in: "1e3", bad: true},
		{in: "20/0", bad: true},
		{in: "20/", bad: true},
		{in: "/40", bad: true},
		{in: " 20", bad: true},
		{in: "20/40/1", bad: true},
		{in: "inf", bad: true},
		{in: "0x10", bad: true},
	}
	for _, c := range cases {
		r, b, err := parseRate(c.in)
		if c.bad != (err != nil) || !c.bad && (r != c.rate || b != c.burst) {
			t.Errorf("parseRate(%q) = %v, %d, %v", c.in, r, b, err)
		}
	}
}

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	if tok, err := readToken("", file("good", "  s3cret \n\n")); err != nil || tok != "s3cret" {
		t.Errorf("file token %q, %v", tok, err)
	}
	if _, err := readToken("", file("empty", " \n")); err == nil {
		t.Errorf("empty token file accepted")
	}
	if _, err := readToken("x", file("both", "y")); err == nil {
		t.Errorf("token and token file both accepted")
	}
	if _, err := readToken("", filepath.Join(dir, "missing")); err == nil {
		t.Errorf("missing token file accepted")
	}
	if _, err := readToken("a\x01b", ""); err == nil {
		t.Errorf("control character accepted")
	}
}

// parseWith runs the serve flags over args, with env already set, and returns the security
// configuration.
func parseWith(t *testing.T, args ...string) (*securityConfig, error) {
	t.Helper()
	var sc *securityConfig
	var perr error
	app := &cli.App{Flags: serveFlags(), Action: func(c *cli.Context) error {
		sc, perr = parseSecurity(c)
		return nil
	}, Writer: io.Discard, ErrWriter: io.Discard}
	if err := app.Run(append([]string{"fulcrum"}, args...)); err != nil {
		return nil, err
	}
	return sc, perr
}

func TestSecurityFlags(t *testing.T) {
	sc, err := parseWith(t)
	if err != nil {
		t.Fatal(err)
	}
	if sc.token != "" || sc.maxBackends != 10000 || sc.rate != 20 || sc.burst != 40 || sc.allow != nil {
		t.Errorf("defaults %+v", sc)
	}
	sc, err = parseWith(t, "--admin-token", "t", "--admin-token-read", "--allow-backend", "10.0.0.0/8",
		"--allow-backend", "::ffff:192.0.2.0/120", "--allow-backend", "198.51.100.7", "--max-backends", "5", "--admin-rate", "1/2")
	if err != nil {
		t.Fatal(err)
	}
	if sc.token != "t" || !sc.tokenRead || sc.maxBackends != 5 || sc.rate != 1 || sc.burst != 2 {
		t.Errorf("flags %+v", sc)
	}
	want := []string{"10.0.0.0/8", "192.0.2.0/24", "198.51.100.7/32"}
	for i, p := range sc.allow {
		if p.String() != want[i] {
			t.Errorf("allow %v, want %v", sc.allow, want)
		}
	}
	for _, bad := range [][]string{
		{"--admin-token-read"}, {"--allow-backend", "10.0.0.0/33"}, {"--max-backends", "-1"},
		{"--admin-rate", "fast"}, {"--admin-token", "a", "--admin-token-file", "/dev/null"},
	} {
		if _, err := parseWith(t, bad...); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestSecurityEnv(t *testing.T) {
	t.Setenv("FULCRUM_ADMIN_TOKEN", "from-env")
	t.Setenv("FULCRUM_ADMIN_TOKEN_READ", "true")
	t.Setenv("FULCRUM_ALLOW_BACKEND", "10.0.0.0/8,192.168.0.0/16")
	t.Setenv("FULCRUM_MAX_BACKENDS", "7")
	t.Setenv("FULCRUM_ADMIN_RATE", "5/9")
	sc, err := parseWith(t)
	if err != nil {
		t.Fatal(err)
	}
	if sc.token != "from-env" || !sc.tokenRead || len(sc.allow) != 2 || sc.maxBackends != 7 || sc.rate != 5 || sc.burst != 9 {
		t.Errorf("env %+v", sc)
	}
	t.Setenv("FULCRUM_ADMIN_TOKEN", "")
	t.Setenv("FULCRUM_ADMIN_TOKEN_FILE", filepath.Join(t.TempDir(), "absent"))
	if _, err := parseWith(t); err == nil {
		t.Errorf("FULCRUM_ADMIN_TOKEN_FILE of a missing file accepted")
	}
}

func TestOpenAdminWarning(t *testing.T) {
	cases := []struct {
		admin, token string
		warn         bool
	}{
		{"0.0.0.0:9090", "", true},
		{"[::]:9090", "", true},
		{"192.0.2.10:9090", "", true},
		{"127.0.0.1:9090", "", false},
		{"[::1]:9090", "", false},
		{"0.0.0.0:9090", "t", false},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, nil))
		adminAddr, _ := net.ResolveTCPAddr("tcp", c.admin)
		listen, _ := net.ResolveTCPAddr("tcp", "[::]:8000")
		sc := &securityConfig{token: c.token, maxBackends: 3}
		sc.warnOpenAdmin(log, adminAddr)
		cfg := &config{sec: sc, log: log, policy: pool.LeastConn}
		p, err := newPool(cfg, defaultService(cfg), log)
		if err != nil {
			t.Fatal(err)
		}
		rules := &newAPI(cfg, []*service{{servicePool: &servicePool{cfg: defaultService(cfg), pool: p}, srv: &listener.Server{}, lns: []net.Listener{fakeListener{listen}}}}, nil, newShared(cfg), adminAddr, nil).Security
		warned := strings.Contains(buf.String(), "address-only rule") && strings.Contains(buf.String(), "admin="+c.admin)
		if warned != c.warn {
			t.Errorf("admin %s token %q: warned %v: %s", c.admin, c.token, warned, buf.String())
		}
		if p.MaxBackends != 3 || len(rules.Self) != 2 || rules.Token != c.token {
			t.Errorf("not applied: %d %v", p.MaxBackends, rules.Self)
		}
	}
}

// TestServeSecurityProcess runs the real binary: token from a file, the loop check against its
// own listen port, the registry cap, a name resolved once and dialed by address, and the
// startup warning for an admin port open to the network without a token.
func TestServeSecurityProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	needBinary(t)
	bin := fulcrumBin
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	os.WriteFile(tokFile, []byte("s3cret\n"), 0o600)
	listen, adminAddr, _ := startFulcrumJSON(t, bin, "--admin-token-file", tokFile, "--max-backends", "2")
	base := "http://" + adminAddr
	call := func(path, token string) int {
		t.Helper()
		r, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	echo := echoServerDual(t)
	_, echoPort, _ := net.SplitHostPort(echo)
	_, listenPort, _ := net.SplitHostPort(listen)
	steps := []struct {
		path, token string
		code        int
	}{
		{"/upstream/add?host=localhost&port=" + echoPort, "", 401},
		{"/upstream/add?host=localhost&port=" + echoPort, "wrong", 401},
		{"/upstream/add?host=localhost&port=" + echoPort, "s3cret", 200},
		{"/upstream/add?host=127.0.0.1&port=" + listenPort, "s3cret", 403},
		{"/upstream/add?host=169.254.169.254&port=80", "s3cret", 403},
		{"/upstream/add?host=198.51.100.7&port=80", "s3cret", 200},
		{"/upstream/add?host=198.51.100.8&port=80", "s3cret", 429},
		{"/upstream/add?host=localhost&port=" + echoPort, "s3cret", 200},
		{"/upstream/remove?host=198.51.100.7&port=80", "s3cret", 200},
		{"/upstream/status", "", 200},
		{"/healthz", "", 200},
	}
	for _, s := range steps {
		if got := call(s.path, s.token); got != s.code {
			t.Fatalf("%s (token %q): %d, want %d", s.path, s.token, got, s.code)
		}
	}
	// The name was resolved once; the balancer dials its address.
	c, err := net.DialTimeout("tcp", listen, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "ping\n")
	if line, err := bufio.NewReader(c).ReadString('\n'); line != "ping\n" {
		t.Errorf("through the balancer: %q, %v", line, err)
	}

	_, _, logs := startFulcrumJSON(t, bin, "--admin", "0.0.0.0:0")
	if !strings.Contains(logs(), "address-only rule") {
		t.Errorf("no warning for an open admin port:\n%s", logs())
	}
}

// startFulcrumJSON runs the binary on loopback ports chosen by the kernel and returns its listen and
// admin addresses (read from its JSON startup log) and a function returning its log so far.
func startFulcrumJSON(t *testing.T, bin string, args ...string) (listen, adminAddr string, logs func() string) {
	t.Helper()
	args = slices.Concat([]string{"serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log-format", "json"}, serveTestArgs(t, args), args)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	var buf bytes.Buffer
	sc := bufio.NewScanner(stderr)
	deadline := time.AfterFunc(20*time.Second, cancel)
	defer deadline.Stop()
	for sc.Scan() {
		buf.Write(sc.Bytes())
		buf.WriteByte('\n')
		var rec struct{ Msg, Listen, Admin string }
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "fulcrum serving" {
			go io.Copy(io.Discard, stderr) // keep the pipe drained; ends when the process does
			snapshot := buf.String()
			return rec.Listen, strings.Replace(rec.Admin, "0.0.0.0", "127.0.0.1", 1), func() string { return snapshot }
		}
	}
	t.Fatalf("fulcrum did not start:\n%s", buf.String())
	return "", "", nil
}

// echoServerDual echoes on 127.0.0.1 (and ::1 when available, since localhost may resolve to
// either first) on one port.
func echoServerDual(t *testing.T) string {
	t.Helper()
	b := startBackend(t, echoHandler)
	if ln6, err := net.Listen("tcp", "[::1]:"+strconv.Itoa(b.Port())); err == nil {
		startBackendOn(t, ln6, echoHandler)
	}
	return b.Addr()
}

// fakeListener is a net.Listener that only has an address: newAPI reads nothing else.
type fakeListener struct{ addr net.Addr }

func (f fakeListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (f fakeListener) Close() error              { return nil }
func (f fakeListener) Addr() net.Addr            { return f.addr }
