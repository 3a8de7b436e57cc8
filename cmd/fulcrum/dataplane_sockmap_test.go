package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/fulcrumlb/fulcrum/listener"
)

var sockmapCheck = sync.OnceValue(listener.CheckSockmap)

// requireSockmap skips t, saying why, where this system cannot run the sockmap plane; with
// FULCRUM_REQUIRE_SOCKMAP=1 (CI) it fails instead.
func requireSockmap(t *testing.T) {
	t.Helper()
	if err := sockmapCheck(); err != nil {
		if os.Getenv("FULCRUM_REQUIRE_SOCKMAP") == "1" {
			t.Fatalf("the sockmap plane is required here: %v", err)
		}
		t.Skipf("skipping the sockmap plane: %v", err)
	}
}

// --data-plane sockmap runs, and the startup line and /upstream/status say data_plane=sockmap.
func TestSockmapDataPlaneNamedInLogAndStatus(t *testing.T) {
	requireSockmap(t)
	b := startBalancer(t, "--data-plane", "sockmap", "--sockmap-after", "0")
	if !strings.Contains(b.log(), `"data_plane":"sockmap"`) {
		t.Errorf("startup log does not say data_plane=sockmap:\n%s", b.log())
	}
	body, code, err := adminGet(b.admn, "/upstream/status")
	if err != nil || code != 200 {
		t.Fatalf("status: %d, %v", code, err)
	}
	var st struct {
		DataPlane string `json:"data_plane"`
	}
	if err := json.Unmarshal(body, &st); err != nil || st.DataPlane != "sockmap" {
		t.Fatalf("status data_plane %q (%v), want sockmap", st.DataPlane, err)
	}
}

// Without the privilege, --data-plane sockmap stops the start (and --check) with one line
// that says what is missing: never a silent fall-back to another plane. Run as nobody when
// the test runs as root.
func TestSockmapRefusedWithoutPrivilege(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the sockmap plane is Linux only")
	}
	needBinary(t)
	dir, err := os.MkdirTemp("", "fulcrum-nobody") // not t.TempDir: its parent is private
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "fulcrum")
	data, err := os.ReadFile(fulcrumBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil || os.Chmod(dir, 0o755) != nil {
		t.Fatalf("copy the binary: %v", err)
	}
	for _, check := range []bool{false, true} {
		argv := []string{"serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--data-plane", "sockmap"}
		if check {
			argv = append(argv, "--check")
		}
		cmd := exec.Command(bin, argv...)
		if os.Geteuid() == 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		} else if listener.CheckSockmap() == nil {
			t.Skip("this unprivileged user may load BPF programs: nothing to refuse")
		}
		out, err := cmd.CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if err == nil || len(lines) != 1 || !strings.Contains(lines[0], "--data-plane sockmap") ||
			!strings.Contains(lines[0], "CAP_BPF") {
			t.Errorf("check=%v: exit %v, output %q: want non-zero and one line naming --data-plane sockmap and CAP_BPF", check, err, out)
		}
	}
}
