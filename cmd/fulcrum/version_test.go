package main

import (
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/fulcrumlb/fulcrum/internal/buildinfo"
)

// `fulcrum --version` names the module version, the VCS revision (or "unknown" when the build
// recorded none, as with -buildvcs=false) and the Go version, on one line.
func TestVersionNamesBuild(t *testing.T) {
	out, err := exec.Command(fulcrumBinary(t), "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("fulcrum --version: %v\n%s", err, out)
	}
	line := strings.TrimSpace(string(out))
	if !regexp.MustCompile(`^fulcrum version \S+ \(revision \S+, go\S+\)$`).MatchString(line) {
		t.Errorf("fulcrum --version printed %q, want: fulcrum version V (revision R, goX)", line)
	}
	if !strings.Contains(line, runtime.Version()) {
		t.Errorf("fulcrum --version printed %q, without the Go version %s", line, runtime.Version())
	}
	if got, want := newApp(&upgrades{}).Version, buildinfo.Read().String(); got != want {
		t.Errorf("app version %q, want the build info's %q", got, want)
	}
}
