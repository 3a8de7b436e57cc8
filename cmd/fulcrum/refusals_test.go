package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// runFulcrum runs the binary to its end (at most 30 s) and returns its exit code and output.
func runFulcrum(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, opsBuildFulcrum(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("fulcrum %v did not exit: it should have refused to start\n%s", args, out)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// TestServeRefusals: every setting that cannot take effect stops serve at start with exit 1 and
// one line that names it.
func TestServeRefusals(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "fulcrum.yaml")
	os.WriteFile(file, []byte("listen: 127.0.0.1:0\n"), 0o600)
	empty := filepath.Join(dir, "empty.yaml")
	os.WriteFile(empty, nil, 0o600)
	comments := filepath.Join(dir, "comments.yaml")
	os.WriteFile(comments, []byte("# listen: :8000\n\n# ttl: 30s\n"), 0o600)
	newer := filepath.Join(dir, "newer.json")
	os.WriteFile(newer, []byte(`{"version":2,"backends":[]}`+"\n"), 0o600)
	aFile := filepath.Join(dir, "plain")
	os.WriteFile(aFile, nil, 0o600)
	missing := filepath.Join(dir, "no-such-dir")
	bind := []string{"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"a stray word", []string{"extra", "--listen", "127.0.0.1:0"}, []string{`unexpected argument "extra"`}},
		{"a file as argument", []string{file, "--balance", "maglev"}, []string{`unexpected argument "` + file + `"`, "use --config " + file}},
		{"state file in a missing directory", append([]string{"--state-file", filepath.Join(missing, "state.json")}, bind...), []string{"--state-file " + filepath.Join(missing, "state.json"), "does not exist"}},
		{"pid file in a missing directory", append([]string{"--pid-file", filepath.Join(missing, "fulcrum.pid")}, bind...), []string{"--pid-file " + filepath.Join(missing, "fulcrum.pid"), "does not exist"}},
		{"pid file under a file", append([]string{"--pid-file", filepath.Join(aFile, "fulcrum.pid")}, bind...), []string{"--pid-file " + filepath.Join(aFile, "fulcrum.pid"), "not a directory"}},
		{"state file is a directory", append([]string{"--state-file", dir}, bind...), []string{"--state-file " + dir, "is a directory"}},
		{"access log in a missing directory", append([]string{"--access-log", filepath.Join(missing, "access.log")}, bind...), []string{"--access-log " + filepath.Join(missing, "access.log"), "does not exist"}},
		{"empty config file", append([]string{"--config", empty}, bind...), []string{"config file " + empty + " sets nothing"}},
		{"config file of comments", append([]string{"--config", comments}, bind...), []string{"config file " + comments + " sets nothing"}},
		{"a static backend twice", append([]string{"--backend", "127.0.0.1:9", "--backend", "127.0.0.1:9"}, bind...), []string{`--backend "127.0.0.1:9": given twice`}},
		{"a state file of a newer version", append([]string{"--state-file", newer}, bind...), []string{"--state-file " + newer, "written by a newer fulcrum"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runFulcrum(t, nil, append([]string{"serve"}, tc.args...)...)
			if code != 1 {
				t.Errorf("exit %d, want 1\n%s", code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if n := strings.Count(strings.TrimSpace(out), "\n"); n != 0 {
				t.Errorf("%d lines, want one:\n%s", n+1, out)
			}
		})
	}
	if _, err := os.Stat(newer); err != nil {
		t.Errorf("the newer state file was moved: %v", err)
	}
}

// TestUsageErrorsAreOneLine: a bad value, a missing one, an unknown flag or command is one
// line with a hint and exit 2, never the usage text.
func TestUsageErrorsAreOneLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"serve", "--ttl", "10"}, nil, `fulcrum: invalid value "10" for --ttl: a duration needs a unit, such as 10s` + "\n"},
		{[]string{"serve", "--drain-timeout=soon"}, nil, `invalid value "soon" for --drain-timeout: want a duration such as 10s, 500ms or 1m30s`},
		{[]string{"serve", "--metrics=maybe"}, nil, `invalid value "maybe" for --metrics: want true or false`},
		{[]string{"serve", "--retries", "two"}, nil, `invalid value "two" for --retries: want a whole number, such as 10`},
		{[]string{"serve"}, []string{"FULCRUM_TTL=10"}, `invalid value "10" for FULCRUM_TTL (--ttl): a duration needs a unit, such as 10s`},
		{[]string{"heartbeat", "--port", "80", "--interval", "5"}, nil, `invalid value "5" for --interval: a duration needs a unit, such as 5s`},
		{[]string{"status", "--timeout", "3"}, nil, `invalid value "3" for --timeout: a duration needs a unit, such as 3s`},
		{[]string{"bench", "compare", "--rounds", "many"}, nil, `invalid value "many" for --rounds: want a whole number`},
		{[]string{"serve", "--lisen", ":1"}, nil, `unknown flag --lisen: did you mean --listen?`},
		{[]string{"serve", "--ttl"}, nil, `--ttl needs a value`},
		{[]string{"stats"}, nil, `unknown command "stats": did you mean "status"?`},
		{[]string{"heartbeat"}, nil, `--port is required`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out := runFulcrum(t, tc.env, tc.args...)
			if code != 2 || !strings.Contains(out, tc.want) || strings.Count(out, "\n") != 1 {
				t.Errorf("exit %d, output %q; want 2 and one line with %q", code, out, tc.want)
			}
		})
	}
}

// TestEveryTypedFlagHasAHint: every duration, boolean and number flag of every command answers
// a bad value with the one-line message of its type.
func TestEveryTypedFlagHasAHint(t *testing.T) {
	var walk func(path []string, cmds []*cli.Command)
	walk = func(path []string, cmds []*cli.Command) {
		for _, cmd := range cmds {
			p := append(append([]string(nil), path...), cmd.Name)
			for _, f := range cmd.Flags {
				bad, hint := badValueFor(f)
				if bad == "" {
					continue
				}
				name := f.Names()[0]
				args := append(append([]string{"fulcrum"}, p...), "--"+name+"="+bad)
				app := newApp(testUpgrades)
				app.Writer, app.ErrWriter = &strings.Builder{}, &strings.Builder{}
				err := app.Run(args)
				var ue *usageError
				want := fmt.Sprintf("invalid value %q for --%s: %s", bad, name, hint)
				if !errors.As(err, &ue) || ue.msg != want {
					t.Errorf("%v: %v; want %q", args[1:], err, want)
				}
			}
			walk(p, cmd.Subcommands)
		}
	}
	walk(nil, newApp(testUpgrades).Commands)
}

// badValueFor is a value flag f refuses and the hint it must get; "" for a flag that takes any
// text.
func badValueFor(f cli.Flag) (string, string) {
	switch f.(type) {
	case *cli.DurationFlag, *altsrc.DurationFlag:
		return "10", "a duration needs a unit, such as 10s"
	case *cli.BoolFlag, *altsrc.BoolFlag:
		return "maybe", "want true or false"
	case *cli.IntFlag, *altsrc.IntFlag, *cli.IntSliceFlag, *cli.Int64Flag:
		return "x", "want a whole number, such as 10"
	case *cli.Float64Flag, *altsrc.Float64Flag:
		return "x", "want a number, such as 1.5"
	}
	return "", ""
}

// TestHeartbeatChecksBeforeItsFirstRequest: a bad --port or --weight ends the agent at once with
// exit 1, though the balancer cannot be reached (it would otherwise retry for ever).
func TestHeartbeatChecksBeforeItsFirstRequest(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--port", "70000"}, "--port 70000: want a port from 1 to 65535"},
		{[]string{"--port", "0"}, "--port 0: want a port from 1 to 65535"},
		{[]string{"--port", "80", "--weight", "0"}, "--weight 0: want a weight from 1 to 256"},
		{[]string{"--port", "80", "--weight", "257"}, "--weight 257: want a weight from 1 to 256"},
	} {
		args := append([]string{"heartbeat", "--admin", "127.0.0.1:1"}, tc.args...)
		code, out := runFulcrum(t, nil, args...)
		if code != 1 || !strings.Contains(out, tc.want) || strings.Contains(out, "retry") {
			t.Errorf("%v: exit %d, output %q; want 1 and %q before any request", tc.args, code, out, tc.want)
		}
	}
}

// TestHeartbeatRetries5xx: a 5xx answer can get better, so the agent retries it and registers
// once the balancer answers.
func TestHeartbeatRetries5xx(t *testing.T) {
	ta := startTestAdmin(t)
	var failures atomic.Int32
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failures.Add(1) <= 2 {
			http.Error(w, `{"error":"try later"}`, http.StatusServiceUnavailable)
			return
		}
		ta.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(flaky.Close)
	p := opsStart(t, opsBuildFulcrum(t), nil, "heartbeat", "--admin", flaky.URL, "--host", "10.0.0.5", "--port", "8080", "--interval", "2s")
	waitFor(t, "registration after two 503s", func() bool { _, ok := backendStatus(ta.pool, "10.0.0.5:8080"); return ok })
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}

// TestServicesUnknownKeyNamesItsLine: a services: entry with an unknown key names the key,
// its line in the file and the valid keys; a bad value names its line and says what it wants.
func TestServicesUnknownKeyNamesItsLine(t *testing.T) {
	path := writeConfig(t, "listen: 127.0.0.1:0\nservices:\n  - name: db\n    listen: 127.0.0.1:1\n  - name: web\n    listen: 127.0.0.1:2\n    colour: red\n")
	_, err := parseServeArgs(t, "--config", path)
	want := fmt.Sprintf(`config file %s: line 7: services[1]: unknown key "colour" (valid keys: name, listen, balance, backends, connect-timeout,`, path)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "proxy-header-timeout)") {
		t.Errorf("error %v\nwant one containing %q and every valid key", err, want)
	}
	path = writeConfig(t, "services:\n  - name: db\n    listen: 127.0.0.1:1\n    idle-timeout: 30\n")
	_, err = parseServeArgs(t, "--config", path)
	want = `line 4: services[0]: idle-timeout: invalid value "30": a duration needs a unit, such as 30s`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want one containing %q", err, want)
	}
	path = writeConfig(t, "listen: 127.0.0.1:0\n\nlsiten: 127.0.0.1:1\n")
	_, err = parseServeArgs(t, "--config", path)
	if want := `line 3: unknown key "lsiten"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want one containing %q", err, want)
	}
}

// TestCIDRFlagsTakeBareAddresses: every CIDR flag, and accept-proxy-protocol in a services:
// entry, reads a bare address as its /32 or /128.
func TestCIDRFlagsTakeBareAddresses(t *testing.T) {
	path := writeConfig(t, "services:\n  - name: db\n    listen: 127.0.0.1:1\n    accept-proxy-protocol: 10.0.0.3\n")
	cfg, err := parseServeArgs(t, "--config", path, "--trusted-proxy", "10.0.0.1", "--accept-proxy-protocol", "::1", "--allow-backend", "10.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	got := []string{cfg.trusted[0].String(), cfg.operating.proxy.Accept[0].String(), cfg.sec.allow[0].String(), serviceNamed(cfg, "db").traffic.proxy.Accept[0].String()}
	if want := []string{"10.0.0.1/32", "::1/128", "10.0.0.2/32", "10.0.0.3/32"}; !slices.Equal(got, want) {
		t.Errorf("parsed %v, want %v", got, want)
	}
	for _, flag := range []string{"--trusted-proxy", "--accept-proxy-protocol", "--allow-backend"} {
		_, err := parseServeArgs(t, flag, "10.0.0.0/99")
		if err == nil || !strings.Contains(err.Error(), flag+`: "10.0.0.0/99": want an address or a CIDR`) || strings.Contains(err.Error(), "netip") {
			t.Errorf("%s 10.0.0.0/99: %v", flag, err)
		}
	}
}

// TestNoGoNamesInConfigErrors: the messages of bad configurations name no Go type or package.
func TestNoGoNamesInConfigErrors(t *testing.T) {
	for _, yaml := range []string{
		"services:\n  - name: db\n    listen: 127.0.0.1:1\n    colour: red\n",
		"services:\n  - name: db\n    listen: 127.0.0.1:1\n    retries: many\n",
		"services:\n  - name: db\n    listen: [a, [b]]\n",
		"services: db\n",
		"listen: [\n",
		"balance: random\n",
		"registry: etcd://\n",
	} {
		_, err := parseServeArgs(t, "--config", writeConfig(t, yaml))
		if err == nil {
			t.Errorf("%q accepted", yaml)
			continue
		}
		for _, goName := range []string{"main.", "netip", ": yaml: ", "unmarshal", "!!", "time.Duration", "pool:", "etcdreg:", "listener:"} {
			if strings.Contains(err.Error(), goName) {
				t.Errorf("%q: error %q names %q", yaml, err, goName)
			}
		}
	}
}

// TestLoopsAboveCPUsWarns: --loops above the CPUs available is a warning at start.
func TestLoopsAboveCPUsWarns(t *testing.T) {
	loops := runtime.NumCPU() + 1
	p := opsStart(t, opsBuildFulcrum(t), nil, "serve", "--data-plane", "epoll", "--loops", strconv.Itoa(loops), "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0")
	want := fmt.Sprintf("--loops %d is more than the %d CPUs available", loops, runtime.NumCPU())
	waitFor(t, "serve to start", func() bool { return servingAddrs.MatchString(p.stderr.String()) })
	if !strings.Contains(p.stderr.String(), "level=WARN msg=\""+want) {
		t.Errorf("no warning %q:\n%s", want, p.stderr.String())
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestEtcdUnreachableAtStartIsAnError: with --registry etcd:// that does not answer and no state
// file, serve logs an ERROR saying it serves no backends until etcd answers, and keeps serving.
func TestEtcdUnreachableAtStartIsAnError(t *testing.T) {
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := opsStart(t, opsBuildFulcrum(t), nil, "serve", "--registry", "etcd://"+dead+"/fulcrum", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0")
	waitFor(t, "the ERROR", func() bool {
		return strings.Contains(p.stderr.String(), "fulcrum serves no backends until etcd answers")
	})
	if !strings.Contains(p.stderr.String(), "level=ERROR") {
		t.Errorf("not an ERROR:\n%s", p.stderr.String())
	}
	m := servingAddrs.FindStringSubmatch(p.stderr.String())
	if m == nil {
		t.Fatalf("not serving:\n%s", p.stderr.String())
	}
	if _, code, err := adminGet(m[2], "/healthz"); err != nil || code != 200 {
		t.Errorf("healthz: %d %v", code, err)
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestConfigFileValuesHaveHints: a value of the wrong kind in the config file gets the same
// hint as on the command line, with its line.
func TestConfigFileValuesHaveHints(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"listen: 127.0.0.1:0\nttl: 10\n", `line 2: invalid value "10" for ttl: a duration needs a unit, such as 10s`},
		{"metrics: maybe\n", `line 1: invalid value "maybe" for metrics: want true or false`},
		{"retries: x\n", `line 1: invalid value "x" for retries: want a whole number, such as 10`},
	} {
		_, err := serveContext(t, "--config", writeConfig(t, tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "Mismatched") {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
