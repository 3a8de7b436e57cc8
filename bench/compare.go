package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Peer names, in the order each round runs them.
const (
	Direct  = "direct"
	Fulcrum = "fulcrum"
	// FulcrumGoroutine is fulcrum with --data-plane=goroutine appended to its arguments, to
	// set the goroutine data plane beside the default one in the same run.
	FulcrumGoroutine = "fulcrum-goroutine"
	// FulcrumSockmap is fulcrum with --data-plane sockmap appended: the kernel relays the
	// bytes of long-lived connections (needs root or CAP_BPF and CAP_NET_ADMIN).
	FulcrumSockmap = "fulcrum-sockmap"
	// FulcrumNometrics is fulcrum with --metrics=false appended, to measure what metrics cost
	// in the same run.
	FulcrumNometrics = "fulcrum-nometrics"
	HAProxy          = "haproxy"
	Nginx            = "nginx"
)

// Peers are every target a comparison knows, in run order.
var Peers = []string{Direct, Fulcrum, FulcrumGoroutine, FulcrumSockmap, FulcrumNometrics, Yardstick, YardstickRawWait, SockmapYardstick, HAProxy, Nginx}

// fulcrumVariants are the peers that are fulcrum with arguments appended.
var fulcrumVariants = map[string][]string{
	FulcrumGoroutine: {"--data-plane=goroutine"},
	FulcrumSockmap:   {"--data-plane", "sockmap"},
	FulcrumNometrics: {"--metrics=false"},
}

// DefaultPeers are the peers a comparison runs when none is named; FulcrumGoroutine joins
// them when the fulcrum binary has a --data-plane flag (withPlanes).
var DefaultPeers = []string{Direct, Fulcrum, HAProxy, Nginx}

// withPlanes puts FulcrumGoroutine after Fulcrum in peers when exe's serve command has a
// --data-plane flag, so that a default comparison sets both planes side by side.
func withPlanes(exe string, peers []string) []string {
	i := slices.Index(peers, Fulcrum)
	if i < 0 || slices.Contains(peers, FulcrumGoroutine) {
		return peers
	}
	out, _ := exec.Command(exe, "serve", "--help").CombinedOutput()
	if !strings.Contains(string(out), "--data-plane") {
		return peers
	}
	return slices.Insert(slices.Clone(peers), i+1, FulcrumGoroutine)
}

// CompareConfig describes one comparison. Exe must be set; the other fields' zero values are
// documented.
type CompareConfig struct {
	// Exe is the fulcrum binary: it runs the backends child and the fulcrum under test.
	Exe string
	// Backends is how many bench backends run; zero means 4.
	Backends int
	// Scenarios to run; nil means all.
	Scenarios []string
	// Peers to compare; nil means DefaultPeers (with FulcrumGoroutine when Exe has a
	// --data-plane flag, Yardstick when Yardstick is set and SockmapYardstick when
	// SockmapYardstick is set). Peers that are not installed are skipped.
	Peers []string
	// Yardstick is the yardstick's binary, or its source folder (with go.mod) to build with
	// `go build`; empty means the yardstick peers are skipped.
	Yardstick string
	// SockmapYardstick is the in-kernel prototype's binary, or its source folder (with go.mod)
	// to build; empty means the sockmap-yardstick peer is skipped.
	SockmapYardstick string
	// YardstickEnv are KEY=VALUE settings added to both yardstick peers' environment after
	// their defaults (yardstickEnv, yardstickRawWaitEnv); nil adds none.
	YardstickEnv []string
	// Rounds of interleaved runs; zero means 3 (fewer than 3 are raised to 3).
	Rounds int
	// Config sizes every run.
	Config Config
	// FulcrumArgs are appended to fulcrum's serve command line (e.g. --cpuprofile FILE).
	FulcrumArgs []string
	// Out receives one line per run and the summary; nil means io.Discard.
	Out io.Writer
	// JSON prints runs as JSON lines instead of text.
	JSON bool
	// Progress receives the live progress line; nil means none.
	Progress io.Writer
	// Command is how the comparison was started, for the report; empty means not shown.
	Command string
}

// withRuler puts the measuring stick peer name before HAProxy in peers when path, what its
// flag said, is set.
func withRuler(peers []string, path, name string) []string {
	if path == "" {
		return peers
	}
	return slices.Insert(slices.Clone(peers), max(slices.Index(peers, HAProxy), 0), name)
}

func (cc *CompareConfig) defaults() {
	if cc.Backends <= 0 {
		cc.Backends = 4
	}
	if len(cc.Scenarios) == 0 {
		cc.Scenarios = Scenarios
	}
	if len(cc.Peers) == 0 {
		cc.Peers = withPlanes(cc.Exe, DefaultPeers)
		cc.Peers = withRuler(cc.Peers, cc.Yardstick, Yardstick)
		cc.Peers = withRuler(cc.Peers, cc.SockmapYardstick, SockmapYardstick)
	}
	cc.Rounds = max(cc.Rounds, 3)
	if cc.Out == nil {
		cc.Out = io.Discard
	}
}

// peer is one running target of a comparison.
type peer struct {
	target Target
	proc   *Process                         // nil for direct
	start  func() (*Process, Target, error) // starts it again; nil for direct
}

// restart replaces the peer's process with a fresh one, keeping what was measured of it.
func (p *peer) restart() (Target, error) {
	if p.start == nil {
		return p.target, nil
	}
	p.proc.Stop()
	proc, t, err := p.start()
	if err != nil {
		return Target{}, err
	}
	t.FDsPerConn = p.target.FDsPerConn
	p.proc, p.target = proc, t
	return t, nil
}

// Compare starts the backends once, then every installed peer in front of them, runs every
// scenario against every peer in interleaved rounds, stops everything and returns the report.
func Compare(ctx context.Context, cc CompareConfig) (*Report, error) {
	cc.defaults()
	RaiseFileLimit()
	rep := &Report{Machine: DescribeMachine(), Config: cc.Config, Rounds: cc.Rounds, Command: cc.Command, Started: time.Now()}
	bs, err := StartChildBackends(cc.Exe, "bench", "backends", "--backends", strconv.Itoa(cc.Backends))
	if err != nil {
		return nil, err
	}
	defer bs.Close()
	dir, err := os.MkdirTemp("", "fulcrum-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	peers := cc.startPeers(dir, bs.Addrs(), rep)
	defer func() {
		for _, p := range peers {
			if p.proc != nil {
				p.proc.Stop()
			}
		}
	}()
	if len(peers) == 0 {
		return nil, errors.New("bench: no peer to compare")
	}
	for _, p := range peers {
		rep.Targets = append(rep.Targets, p.target.Name)
	}
	if cc.needsHold() {
		if cc.Config.Hold, err = cc.commonHold(ctx, bs, peers, rep); err != nil {
			return nil, err
		}
		rep.Config.Hold = cc.Config.Hold
	}
	if err := cc.rounds(ctx, bs, peers, rep); err != nil {
		return rep, err
	}
	rep.Finished, rep.Machine.LoadAvgEnd = time.Now(), loadAvg()
	return rep, nil
}

// startPeers starts every peer it can; a peer that is missing or fails to start is skipped
// and the reason goes into the report.
func (cc *CompareConfig) startPeers(dir string, backends []string, rep *Report) []*peer {
	var out []*peer
	l := launcher{exe: cc.Exe, dir: dir, backends: backends, fulcrumArgs: cc.FulcrumArgs, yardstickEnv: cc.YardstickEnv}
	if slices.ContainsFunc(cc.Peers, isYardstick) {
		l.yardstick = newRuler(Yardstick, cc.Yardstick, dir)
	}
	if slices.Contains(cc.Peers, SockmapYardstick) {
		l.sockmapYardstick = newRuler(SockmapYardstick, cc.SockmapYardstick, dir)
	}
	for _, name := range cc.Peers {
		start := l.start(name)
		p, t, err := (*Process)(nil), Target{Name: Direct, Addr: backends[0], Direct: true}, error(nil)
		if start != nil {
			p, t, err = start()
		}
		if err != nil {
			msg := fmt.Sprintf("skipping %s: %v", name, err)
			fmt.Fprintln(cc.Out, msg)
			rep.Skipped = append(rep.Skipped, msg)
			continue
		}
		if p != nil {
			fmt.Fprintf(cc.Out, "%s listening on %s (pid %d)\n", name, t.Addr, t.PID)
		}
		if t.Setup != "" {
			rep.Setups = append(rep.Setups, name+": "+t.Setup)
		}
		out = append(out, &peer{target: t, proc: p, start: start})
	}
	return out
}

// launcher starts peers in front of backends, with their configuration files in dir.
type launcher struct {
	exe              string   // fulcrum's binary
	dir              string   // configuration files
	backends         []string // what every peer forwards to
	fulcrumArgs      []string // appended to every fulcrum peer's serve command
	yardstick        ruler    // for the yardstick peers; zero when none runs
	yardstickEnv     []string // appended to the yardstick peers' environment
	sockmapYardstick ruler    // zero when the sockmap-yardstick peer does not run
}

// start is how to start peer name; nil for direct.
func (l launcher) start(name string) func() (*Process, Target, error) {
	if extra, ok := fulcrumVariants[name]; ok {
		return l.fulcrumVariant(name, extra)
	}
	switch name {
	case Direct:
		return nil
	case Fulcrum:
		return func() (*Process, Target, error) { return StartFulcrum(l.exe, l.backends, l.fulcrumArgs...) }
	case Yardstick, YardstickRawWait:
		env := yardstickSetup(name, l.yardstickEnv)
		return func() (*Process, Target, error) {
			if l.yardstick.err != nil {
				return nil, Target{}, l.yardstick.err
			}
			return startYardstick(name, l.yardstick.bin, l.yardstick.from, env, l.backends)
		}
	case SockmapYardstick:
		return func() (*Process, Target, error) { return startSockmapYardstick(l.sockmapYardstick, l.backends) }
	case HAProxy:
		return func() (*Process, Target, error) { return StartHAProxy(l.dir, l.backends) }
	case Nginx:
		return func() (*Process, Target, error) { return StartNginx(l.dir, l.backends) }
	}
	return func() (*Process, Target, error) {
		return nil, Target{}, fmt.Errorf("unknown peer %q (want one of %s)", name, strings.Join(Peers, ", "))
	}
}

// sockmapSettle is how long idle lets fulcrum-sockmap move held connections into the kernel
// before measuring: ten times the default --sockmap-after.
const sockmapSettle = time.Second

// fulcrumVariant starts fulcrum as peer name with extra appended after --fulcrum-arg's
// arguments, so that the variant's own setting wins.
func (l launcher) fulcrumVariant(name string, extra []string) func() (*Process, Target, error) {
	args := append(slices.Clone(l.fulcrumArgs), extra...)
	return func() (*Process, Target, error) {
		p, t, err := StartFulcrum(l.exe, l.backends, args...)
		t.Name, t.Setup = name, "fulcrum with `"+strings.Join(extra, " ")+"` appended to its serve command"
		if name == FulcrumSockmap {
			// Held connections move into the kernel after --sockmap-after (100ms by default):
			// idle measures them there.
			t.Settle = sockmapSettle
			t.Setup += fmt.Sprintf("; idle measures %s after the last connection is held, so that they are in the kernel", sockmapSettle)
		}
		return p, t, err
	}
}

// commonHold is the number of connections every peer can hold, so that idle and balance
// compare like with like; the reason for clamping is printed once.
func (cc *CompareConfig) commonHold(ctx context.Context, bs Backends, peers []*peer, rep *Report) (int, error) {
	n := cc.Config.hold()
	why := ""
	for _, p := range peers {
		r := Runner{Backends: bs, Target: p.target, Config: cc.Config}
		m, w, err := r.holdLimit(ctx)
		if err != nil {
			return 0, err
		}
		p.target.FDsPerConn = r.Target.FDsPerConn // measured once, before pools fill
		if m < n {
			n, why = m, w
		}
	}
	if why != "" {
		fmt.Fprintln(cc.Out, "idle/balance: "+why)
		rep.Notes = append(rep.Notes, "idle and balance for every peer: "+why)
	}
	return n, nil
}

func (cc *CompareConfig) needsHold() bool {
	return slices.Contains(cc.Scenarios, Idle) || slices.Contains(cc.Scenarios, Balance)
}

// rounds runs A B C D, A B C D, ... for each scenario within each round, so that drift of the
// machine hits every peer alike. A failed run is reported and the comparison goes on.
func (cc *CompareConfig) rounds(ctx context.Context, bs Backends, peers []*peer, rep *Report) error {
	for round := 1; round <= cc.Rounds; round++ {
		for _, sc := range cc.Scenarios {
			for _, p := range peers {
				if err := ctx.Err(); err != nil {
					return err
				}
				if sc == Balance && p.target.Direct {
					continue
				}
				r := Runner{Backends: bs, Target: p.target, Config: cc.Config, Round: round, Progress: cc.Progress, Restart: p.restart}
				res, err := r.Run(ctx, sc)
				failure := ""
				if err != nil {
					failure = fmt.Sprintf("round %d: %v", round, err)
				}
				rep.record(cc.Out, cc.JSON, res, failure)
			}
		}
	}
	return nil
}
