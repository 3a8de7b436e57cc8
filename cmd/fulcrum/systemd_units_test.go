package main

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// unitFile is a systemd unit: section → key → values, in order (a key may repeat).
type unitFile map[string]map[string][]string

func readUnit(t *testing.T, name string) unitFile {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "contrib", "systemd", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: line %q is neither a section nor KEY=VALUE", name, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

func (u unitFile) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) != 1 {
		t.Fatalf("[%s] %s= given %d times, want once", section, key, len(v))
	}
	return v[0]
}

// TestSystemdUnit: the shipped unit is Type=notify with NotifyAccess=all (the successor of an
// upgrade reports), reloads by SIGHUP, has systemd create the directories of the PID and state
// files it passes, keeps its sandboxing, allows the drain before the kill, and its command
// lines are flags serve accepts.
func TestSystemdUnit(t *testing.T) {
	u := readUnit(t, "fulcrum.service")
	for key, want := range map[string]string{
		"Type": "notify", "NotifyAccess": "all", "ExecReload": "/bin/kill -HUP $MAINPID",
		"RuntimeDirectory": "fulcrum", "StateDirectory": "fulcrum", "DynamicUser": "yes",
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"KillSignal": "SIGTERM", "Restart": "on-failure", "LimitNOFILE": "65536",
		"AmbientCapabilities": "CAP_NET_BIND_SERVICE", "LogsDirectory": "fulcrum",
	} {
		if got := u.one(t, "Service", key); got != want {
			t.Errorf("%s=%s, want %s", key, got, want)
		}
	}
	stop, err := time.ParseDuration(u.one(t, "Service", "TimeoutStopSec"))
	if err != nil || stop <= 30*time.Second {
		t.Errorf("TimeoutStopSec %v (%v): want more than the default --drain-timeout of 30s", stop, err)
	}
	config := writeConfig(t, "listen: 127.0.0.1:0\n")
	for _, key := range []string{"ExecStart"} {
		args := strings.Fields(u.one(t, "Service", key))
		if len(args) < 2 || args[0] != "/usr/local/bin/fulcrum" || args[1] != "serve" {
			t.Fatalf("%s=%v: want /usr/local/bin/fulcrum serve ...", key, args)
		}
		args = args[2:]
		if i := slices.Index(args, "--config"); i >= 0 && i+1 < len(args) {
			args[i+1] = config // the unit's file is not on the test machine
		}
		cfg, err := parseServeArgs(t, args...)
		if err != nil {
			t.Fatalf("%s: serve refuses its flags: %v", key, err)
		}
		if filepath.Dir(cfg.pidFile) != "/run/"+u.one(t, "Service", "RuntimeDirectory") {
			t.Errorf("%s: --pid-file %q is not in the RuntimeDirectory", key, cfg.pidFile)
		}
		if filepath.Dir(cfg.stateFile) != "/var/lib/"+u.one(t, "Service", "StateDirectory") {
			t.Errorf("%s: --state-file %q is not in the StateDirectory", key, cfg.stateFile)
		}
	}
	if u.one(t, "Install", "WantedBy") != "multi-user.target" {
		t.Error("not wanted by multi-user.target")
	}
}

// TestSystemdHeartbeatUnit: the agent's template follows the backend's service (%i), runs
// fulcrum heartbeat, and is not restarted after a refusal for good (exit 1).
func TestSystemdHeartbeatUnit(t *testing.T) {
	u := readUnit(t, "fulcrum-heartbeat@.service")
	for _, kv := range [][3]string{
		{"Unit", "BindsTo", "%i.service"},
		{"Service", "Restart", "on-abnormal"},
		{"Service", "DynamicUser", "yes"},
		{"Install", "WantedBy", "%i.service"},
	} {
		if got := u.one(t, kv[0], kv[1]); got != kv[2] {
			t.Errorf("[%s] %s=%s, want %s", kv[0], kv[1], got, kv[2])
		}
	}
	if !strings.Contains(u.one(t, "Unit", "After"), "%i.service") {
		t.Error("not ordered after the backend's service")
	}
	args := strings.Fields(u.one(t, "Service", "ExecStart"))
	if len(args) < 2 || args[0] != "/usr/local/bin/fulcrum" || args[1] != "heartbeat" {
		t.Fatalf("ExecStart=%v: want /usr/local/bin/fulcrum heartbeat ...", args)
	}
	app := newApp(testUpgrades)
	cmd := app.Command("heartbeat")
	for _, a := range args[2:] {
		if name, ok := strings.CutPrefix(a, "--"); ok && flagNamed(cmd.Flags, strings.SplitN(name, "=", 2)[0]) == nil {
			t.Errorf("ExecStart uses %s, which heartbeat does not have", a)
		}
	}
}
