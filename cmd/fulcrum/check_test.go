package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeCheck: serve --check reports a good configuration in one line and exit 0, a bad one
// with one line per problem and exit 1; it binds nothing (the ports it names are held by the
// test meanwhile) and writes none of the files it checks.
func TestServeCheck(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldAdmin, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer heldAdmin.Close()
	dir := t.TempDir()
	state, pid, access := filepath.Join(dir, "state.json"), filepath.Join(dir, "fulcrum.pid"), filepath.Join(dir, "access.log")
	config := filepath.Join(dir, "fulcrum.yaml")
	os.WriteFile(config, []byte(fmt.Sprintf("listen: %s\nadmin: %s\nbackend: [127.0.0.1:9001, localhost:9002]\nservices:\n  - name: db\n    listen: 127.0.0.1:0\n    backends: 127.0.0.1:9003\n", held.Addr(), heldAdmin.Addr())), 0o600)

	t.Run("good", func(t *testing.T) {
		code, out := runFulcrumOut(t, "serve", "--check", "--config", config, "--state-file", state, "--pid-file", pid, "--access-log", access)
		if code != 0 || out != "configuration ok: 2 services, 3 static backends\n" {
			t.Errorf("exit %d, output %q; want 0 and the ok line", code, out)
		}
		for _, f := range []string{state, pid, access} {
			if _, err := os.Stat(f); err == nil {
				t.Errorf("--check wrote %s", f)
			}
		}
		if leftover, _ := filepath.Glob(filepath.Join(dir, ".fulcrum-check-*")); len(leftover) != 0 {
			t.Errorf("--check left %v", leftover)
		}
	})
	t.Run("bad", func(t *testing.T) {
		missing := filepath.Join(dir, "nowhere")
		code, out := runFulcrumOut(t, "serve", "--check", "--config", config,
			"--state-file", filepath.Join(missing, "state.json"), "--pid-file", filepath.Join(missing, "fulcrum.pid"),
			"--backend", "no-such-host.invalid:80", "--service", "web="+held.Addr().String())
		lines := strings.Split(strings.TrimSpace(out), "\n")
		want := []string{
			"--state-file " + filepath.Join(missing, "state.json") + ": directory " + missing + ": does not exist",
			"--pid-file " + filepath.Join(missing, "fulcrum.pid") + ": directory " + missing + ": does not exist",
			"service web " + held.Addr().String() + ": --listen listens there too",
			"service default: backend no-such-host.invalid:80: cannot resolve no-such-host.invalid",
		}
		if code != 1 || len(lines) != len(want) {
			t.Fatalf("exit %d, %d lines; want 1 and %d lines:\n%s", code, len(lines), len(want), out)
		}
		for i, w := range want {
			if !strings.HasPrefix(lines[i], "fulcrum: "+w) {
				t.Errorf("line %d %q, want it to start with %q", i+1, lines[i], "fulcrum: "+w)
			}
		}
	})
	t.Run("newer state file", func(t *testing.T) {
		newer := filepath.Join(dir, "newer.json")
		os.WriteFile(newer, []byte(`{"version":2,"backends":[]}`), 0o600)
		code, out := runFulcrumOut(t, "serve", "--check", "--config", config, "--state-file", newer)
		if code != 1 || !strings.Contains(out, "--state-file "+newer+": written by a newer fulcrum") {
			t.Errorf("exit %d, output %q", code, out)
		}
	})
	t.Run("bad config file", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.yaml")
		os.WriteFile(bad, []byte("listen: :1\nbalance: random\n"), 0o600)
		code, out := runFulcrumOut(t, "serve", "--check", "--config", bad)
		if code != 1 || !strings.Contains(out, `unknown balance policy "random"`) || strings.Count(out, "\n") != 1 {
			t.Errorf("exit %d, output %q; want 1 and one line about the policy", code, out)
		}
	})
}

// runFulcrumOut is runFulcrum with stdout and stderr apart: stdout's text when it exits 0,
// stderr's otherwise.
func runFulcrumOut(t *testing.T, args ...string) (int, string) {
	t.Helper()
	return runFulcrum(t, nil, args...)
}
