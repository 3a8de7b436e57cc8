package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The yardstick is a bare event-loop balancer kept outside the repository (a measuring stick
// for the data path: raw epoll loops, no timeouts, metrics, admin or health checks). The bench
// only points at it: it runs the binary, or builds the folder it is given, and never links it.
const (
	// Yardstick runs in fulcrum's own set-up: one loop, a blocking epoll wait through the
	// runtime, two Ps (yardstickEnv).
	Yardstick = "yardstick"
	// YardstickRawWait runs one loop on a raw blocking epoll_wait that keeps its P, with one P
	// (the yardstick's fastest set-up on two cores: yardstickRawWaitEnv).
	YardstickRawWait = "yardstick-rawwait"
	// SockmapYardstick is a second, separate ruler: the in-kernel prototype that
	// fulcrum-sockmap is measured beside (sockmapyardstick.go).
	SockmapYardstick = "sockmap-yardstick"
)

// Environments of the two yardstick peers; --yardstick-env settings are appended after them
// and win.
var (
	yardstickEnv        = []string{"EVL_LOOPS=1", "EVL_RAWWAIT=0", "GOMAXPROCS=2"}
	yardstickRawWaitEnv = []string{"EVL_LOOPS=1", "EVL_RAWWAIT=1", "GOMAXPROCS=1"}
)

// isYardstick says whether peer name is one of the yardstick's.
func isYardstick(name string) bool { return name == Yardstick || name == YardstickRawWait }

// PrepareYardstick returns the yardstick binary that path names: path itself when it is a
// file, or a binary built with `go build` into dir when path is a folder with a go.mod. The
// report names path, not the temporary binary.
func PrepareYardstick(path, dir string) (string, error) {
	return prepareRuler(Yardstick, path, dir)
}

// rulerFlags are the flags that name each measuring stick (the yardstick peers share one).
var rulerFlags = map[string]string{Yardstick: "--yardstick", SockmapYardstick: "--sockmap-yardstick"}

// prepareRuler returns the binary of measuring stick name, which its flag set to path: path
// itself when it is a file, or dir/name built with `go build` when path is a folder with a
// go.mod. Its errors name the flag, so that they say what to give.
func prepareRuler(name, path, dir string) (string, error) {
	flag := rulerFlags[name]
	if path == "" {
		return "", fmt.Errorf("no %s given (%s PATH: its binary, or its folder to build)", name, flag)
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", flag, path, err)
	}
	if !st.IsDir() {
		return filepath.Abs(path)
	}
	if _, err := os.Stat(filepath.Join(path, "go.mod")); err != nil {
		return "", fmt.Errorf("%s %s: a folder without go.mod: give the %s's binary or its source folder", flag, path, name)
	}
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = path
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s %s: go build failed (%v): %s", flag, path, err, lastLines(string(msg), 10))
	}
	return out, nil
}

// ruler is a measuring stick peer's binary, made ready once per comparison.
type ruler struct {
	bin  string // the binary to run; empty when err says why there is none
	err  error
	from string // what its flag named: the binary, or the folder it was built from
}

// newRuler prepares measuring stick name from path, what its flag said (prepareRuler).
func newRuler(name, path, dir string) ruler {
	bin, err := prepareRuler(name, path, dir)
	return ruler{bin: bin, err: err, from: path}
}

// yardstickSetup is the environment peer name runs with: its defaults, then extra.
func yardstickSetup(name string, extra []string) []string {
	env := yardstickEnv
	if name == YardstickRawWait {
		env = yardstickRawWaitEnv
	}
	return append(append([]string{}, env...), extra...)
}

// StartYardstick runs the yardstick binary exe as peer name with env added to its
// environment, in front of backends, and waits until it accepts connections.
func StartYardstick(name, exe string, env, backends []string) (*Process, Target, error) {
	return startYardstick(name, exe, exe, env, backends)
}

// startYardstick is StartYardstick with from, what the report names as the binary's origin.
func startYardstick(name, exe, from string, env, backends []string) (*Process, Target, error) {
	p, listen, err := startServer(name, func(listen string) (*exec.Cmd, error) {
		args := []string{"serve", "--listen", listen}
		for _, b := range backends {
			args = append(args, "--backend", b)
		}
		cmd := exec.Command(exe, args...)
		cmd.Env = append(os.Environ(), env...) // the last of a repeated key wins
		return cmd, nil
	}, canDial)
	if err != nil {
		return nil, Target{}, err
	}
	// The yardstick keeps no per-backend counts: Counts stays nil.
	setup := fmt.Sprintf("`%s`, environment %s (%s)", from, strings.Join(env, " "), yardstickMeaning[name])
	return p, Target{Name: name, Addr: listen, PID: p.PID(), Setup: setup}, nil
}

// yardstickMeaning says what each yardstick peer's default environment stands for.
var yardstickMeaning = map[string]string{
	Yardstick:        "by default fulcrum's own set-up: one event loop, a blocking epoll wait through the Go runtime, GOMAXPROCS=2",
	YardstickRawWait: "by default one event loop on a raw blocking epoll_wait that keeps its P, GOMAXPROCS=1",
}
