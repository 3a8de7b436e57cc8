package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// dockerfile is what the tests need of ../../Dockerfile: the build stage's ARG defaults and
// ENV, its go build command, and the final stage's USER, EXPOSE and FROM count.
type dockerfile struct {
	args, env map[string]string
	build     []string // go build and its arguments
	user      string
	expose    []string
	stages    int
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	d := dockerfile{args: map[string]string{}, env: map[string]string{}}
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		instr, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			d.stages++
		case "ARG":
			k, v, _ := strings.Cut(rest, "=")
			d.args[k] = v
		case "ENV":
			for _, kv := range shellWords(t, rest) {
				k, v, _ := strings.Cut(kv, "=")
				d.env[k] = v
			}
		case "RUN":
			if words := shellWords(t, rest); len(words) > 2 && words[0] == "go" && words[1] == "build" {
				d.build = words
			}
		case "USER":
			d.user = rest
		case "EXPOSE":
			d.expose = strings.Fields(rest)
		}
	}
	return d
}

// shellWords splits a command line as sh does for the quoting a Dockerfile uses here: words
// apart by blanks, double quotes grouping, and ${NAME} left for the caller.
func shellWords(t *testing.T, s string) []string {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("unbalanced quotes in %q", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// TestDockerfile: a multi-stage build of a static binary (CGO_ENABLED=0), run by a user that
// is not root, with the balanced and admin ports exposed. The binary is built here with the
// Dockerfile's own flags and environment, so the two cannot drift, and then run.
func TestDockerfile(t *testing.T) {
	d := readDockerfile(t)
	if d.stages < 2 {
		t.Errorf("%d FROM lines: want a multi-stage build", d.stages)
	}
	if d.env["CGO_ENABLED"] != "0" {
		t.Errorf("CGO_ENABLED=%q in the build stage, want 0", d.env["CGO_ENABLED"])
	}
	if d.user == "" || d.user == "root" || strings.HasPrefix(d.user, "0") {
		t.Errorf("USER %q: want a user that is not root", d.user)
	}
	if !slices.Contains(d.expose, "8000") || !slices.Contains(d.expose, "9090") {
		t.Errorf("EXPOSE %v: want 8000 and 9090", d.expose)
	}
	if d.build == nil {
		t.Fatal("no RUN go build in the Dockerfile")
	}
	if testing.Short() {
		t.Skip("building with the Dockerfile's flags: not in -short")
	}
	bin := filepath.Join(t.TempDir(), "fulcrum")
	args := slices.Clone(d.build[1:])
	for i, a := range args {
		args[i] = os.Expand(a, func(k string) string { return d.args[k] })
	}
	if i := slices.Index(args, "-o"); i >= 0 && i+1 < len(args) {
		args[i+1] = bin // the same build, written where the test can run it
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = filepath.Join("..", "..") // the Dockerfile builds from the repository's root
	cmd.Env = os.Environ()
	for k, v := range d.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %v: %v\n%s", args, err, out)
	}
	checkStatic(t, bin)

	if out, err := exec.Command(bin, "--version").CombinedOutput(); err != nil || !strings.Contains(string(out), d.args["VERSION"]) {
		t.Errorf("--version: %v\n%s", err, out)
	}
	p := opsStart(t, bin, nil, "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0")
	var m []string
	waitFor(t, "serve to start", func() bool { m = servingAddrs.FindStringSubmatch(p.stderr.String()); return m != nil })
	if out, err := exec.Command(bin, "status", "--admin", m[2]).CombinedOutput(); err != nil {
		t.Errorf("status: %v\n%s", err, out)
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("serve exit %d", code)
	}
}

// checkStatic fails unless bin is an ELF executable without a program interpreter, that is
// linked statically and runs on a base image without a C library.
func checkStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s needs a program interpreter: not a static binary", bin)
		}
	}
}

// TestDockerEntrypoint: the image's entrypoint opens the admin API to the container's
// interfaces only when a token protects it, and never overrides FULCRUM_ADMIN.
func TestDockerEntrypoint(t *testing.T) {
	stubDir := t.TempDir()
	stub := "#!/bin/sh\necho \"admin=${FULCRUM_ADMIN:-unset} args=$*\"\n"
	if err := os.WriteFile(filepath.Join(stubDir, "fulcrum"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	entry := filepath.Join("..", "..", "contrib", "docker", "entrypoint.sh")
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "admin=unset args=serve"},
		{[]string{"FULCRUM_ADMIN_TOKEN=s3cret"}, "admin=0.0.0.0:9090 args=serve"},
		{[]string{"FULCRUM_ADMIN_TOKEN_FILE=/run/secrets/token"}, "admin=0.0.0.0:9090 args=serve"},
		{[]string{"FULCRUM_ADMIN_TOKEN=s3cret", "FULCRUM_ADMIN=127.0.0.1:9090"}, "admin=127.0.0.1:9090 args=serve"},
	} {
		cmd := exec.Command("sh", entry, "serve")
		cmd.Env = append([]string{"PATH=" + stubDir + ":/usr/bin:/bin"}, tc.env...)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("env %v: %v %q, want %q", tc.env, err, out, tc.want)
		}
	}
}
