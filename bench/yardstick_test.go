package bench

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestPrepareYardstick: a file is used as it is, a folder with go.mod is built, anything else
// is refused with a message that says what to give.
func TestPrepareYardstick(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "ys")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	if got, err := PrepareYardstick(bin, t.TempDir()); err != nil || got != bin {
		t.Errorf("a binary: %q, %v; want it as it is", got, err)
	}
	if _, err := PrepareYardstick("", dir); err == nil || !strings.Contains(err.Error(), "--yardstick PATH") {
		t.Errorf("none given: %v, want a message naming --yardstick", err)
	}
	if _, err := PrepareYardstick(filepath.Join(dir, "missing"), dir); err == nil {
		t.Error("a missing path was accepted")
	}
	if _, err := PrepareYardstick(t.TempDir(), dir); err == nil || !strings.Contains(err.Error(), "without go.mod") {
		t.Errorf("a folder without go.mod: %v", err)
	}
	missing := filepath.Join(dir, "missing")
	if _, err := prepareRuler(SockmapYardstick, missing, dir); err == nil || !strings.Contains(err.Error(), "--sockmap-yardstick "+missing+": ") {
		t.Errorf("a missing sockmap yardstick: %v, want a message naming --sockmap-yardstick and the path", err)
	}
	if _, err := prepareRuler(SockmapYardstick, "", dir); err == nil || !strings.Contains(err.Error(), "--sockmap-yardstick PATH") {
		t.Errorf("no sockmap yardstick given: %v, want a message naming --sockmap-yardstick", err)
	}
	if testing.Short() {
		return
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module ys\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644)
	out := t.TempDir()
	got, err := PrepareYardstick(src, out)
	if err != nil || got != filepath.Join(out, "yardstick") {
		t.Fatalf("a source folder: %q, %v; want it built into %s", got, err, out)
	}
	if st, err := os.Stat(got); err != nil || st.Mode()&0o111 == 0 {
		t.Errorf("built yardstick: %v %v", st, err)
	}
	os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nfunc main() { nope }\n"), 0o644)
	if _, err := PrepareYardstick(src, out); err == nil || !strings.Contains(err.Error(), "go build") {
		t.Errorf("a folder that does not build: %v, want the build's error", err)
	}
}

// TestYardstickSetup: the yardstick runs in fulcrum's set-up by default, the raw-wait peer in
// its own, and --yardstick-env settings come last so that they win.
func TestYardstickSetup(t *testing.T) {
	if got := strings.Join(yardstickSetup(Yardstick, nil), " "); got != "EVL_LOOPS=1 EVL_RAWWAIT=0 GOMAXPROCS=2" {
		t.Errorf("yardstick: %s", got)
	}
	if got := strings.Join(yardstickSetup(YardstickRawWait, []string{"EVL_LOOPS=2"}), " "); got != "EVL_LOOPS=1 EVL_RAWWAIT=1 GOMAXPROCS=1 EVL_LOOPS=2" {
		t.Errorf("yardstick-rawwait with an override: %s", got)
	}
	if yardstickEnv[0] != "EVL_LOOPS=1" || len(yardstickSetup(Yardstick, []string{"X=1"})) != 4 || len(yardstickEnv) != 3 {
		t.Error("yardstickSetup changed the defaults it appends to")
	}
}

// TestPeerVariants: each fulcrum variant appends its own setting after --fulcrum-arg's, and
// the yardstick joins the default peers (before HAProxy) only when it is given.
func TestPeerVariants(t *testing.T) {
	for name, want := range map[string]string{FulcrumGoroutine: "--data-plane=goroutine",
		FulcrumSockmap: "--data-plane sockmap", FulcrumNometrics: "--metrics=false"} {
		if got := strings.Join(fulcrumVariants[name], " "); got != want || !slices.Contains(Peers, name) {
			t.Errorf("%s appends %q, want %q (and is a known peer)", name, got, want)
		}
	}
	for _, name := range []string{Yardstick, YardstickRawWait} {
		if !slices.Contains(Peers, name) || !isYardstick(name) {
			t.Errorf("%s is not a known yardstick peer", name)
		}
	}
	if !slices.Contains(Peers, SockmapYardstick) || isYardstick(SockmapYardstick) {
		t.Errorf("%s is not a known peer of its own", SockmapYardstick)
	}
	for _, c := range []struct{ yardstick, sockmap, want string }{
		{"/some/yardstick", "", "direct fulcrum yardstick haproxy nginx"},
		{"", "/some/smy", "direct fulcrum sockmap-yardstick haproxy nginx"},
		{"/some/yardstick", "/some/smy", "direct fulcrum yardstick sockmap-yardstick haproxy nginx"},
	} {
		cc := CompareConfig{Exe: "/nonexistent/fulcrum", Yardstick: c.yardstick, SockmapYardstick: c.sockmap}
		cc.defaults()
		if got := strings.Join(cc.Peers, " "); got != c.want {
			t.Errorf("default peers with --yardstick %q --sockmap-yardstick %q: %s, want %s", c.yardstick, c.sockmap, got, c.want)
		}
	}
	cc := CompareConfig{Exe: "/nonexistent/fulcrum"}
	cc.defaults()
	if slices.ContainsFunc(cc.Peers, isYardstick) || slices.Contains(cc.Peers, SockmapYardstick) {
		t.Errorf("default peers without --yardstick and --sockmap-yardstick: %v", cc.Peers)
	}
	rep := &Report{}
	cc = CompareConfig{Exe: "/nonexistent/fulcrum", Peers: []string{Yardstick}, Out: &strings.Builder{}}
	if peers := cc.startPeers(t.TempDir(), []string{"127.0.0.1:1"}, rep); len(peers) != 0 ||
		len(rep.Skipped) != 1 || !strings.Contains(rep.Skipped[0], "skipping yardstick: no yardstick given (--yardstick PATH") {
		t.Errorf("yardstick without --yardstick: %d started, skipped %q", len(peers), rep.Skipped)
	}
}

// TestReportPeersAndGoals: the new peers get their ratio columns, and the targets of the
// sockmap plane, of metrics on against off, and of many backends are checked.
func TestReportPeersAndGoals(t *testing.T) {
	r := &Report{Rounds: 3, Targets: []string{Direct, Fulcrum, FulcrumNometrics, FulcrumSockmap, Yardstick, HAProxy},
		Setups: []string{"yardstick: `ys`, environment EVL_LOOPS=1"}}
	for round := 1; round <= 3; round++ {
		for name, v := range map[string]float64{Direct: 100, Fulcrum: 50, FulcrumNometrics: 40, FulcrumSockmap: 60, Yardstick: 25, HAProxy: 20} {
			r.Results = append(r.Results, Result{Scenario: Connrate, Target: name, Round: round,
				Metrics: map[string]float64{"conns_per_s": v, "cpu_us_per_conn": v}})
		}
	}
	rows := r.table()
	head := strings.Join(rows[0], "|")
	for _, want := range []string{"fulcrum ÷ yardstick", "fulcrum ÷ fulcrum-nometrics", "fulcrum-sockmap ÷ fulcrum",
		"fulcrum-sockmap ÷ haproxy", "yardstick ÷ haproxy", "fulcrum-sockmap ÷ direct"} {
		if !strings.Contains(head, want) {
			t.Errorf("head lacks %q: %s", want, head)
		}
	}
	var b strings.Builder
	r.WriteMarkdown(&b, "")
	md := b.String()
	for _, want := range []string{"- Set-up of yardstick: `ys`, environment EVL_LOOPS=1",
		"- CPU per connection with metrics on within 3% of --metrics=false: **no** (fulcrum 50, bound 41.20)",
		"- sockmap: connections/s within 5% of the epoll plane: **yes** (fulcrum-sockmap 60, bound 47.50)"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "sockmap: latency1") {
		t.Errorf("a target of a scenario that did not run:\n%s", md)
	}

	m := &Report{Rounds: 3, Targets: []string{Fulcrum, FulcrumNometrics}}
	for round := 1; round <= 3; round++ {
		m.Results = append(m.Results,
			Result{Scenario: ManyBackends, Target: Fulcrum, Round: round, Metrics: map[string]float64{
				"rss_per_backend_kib": 2.5, "scrape_s": 0.4, "heartbeats_per_s": 900}},
			Result{Scenario: ManyBackends, Target: FulcrumNometrics, Round: round, Metrics: map[string]float64{
				"rss_per_backend_kib": 1, "heartbeats_per_s": 1000}})
	}
	b.Reset()
	m.WriteMarkdown(&b, "")
	md = b.String()
	for _, want := range []string{"| many-backends | heartbeats_per_s (heartbeats/s) ↑ | 900 | 1000 | 0.90 |",
		"- RSS of metrics per backend (fulcrum − --metrics=false) ≤ 1 KiB: **no** (fulcrum − fulcrum-nometrics 1.50, bound 1)",
		"- one /metrics scrape ≤ 0.5 s: **yes** (fulcrum 0.4, bound 0.5)",
		"- heartbeats/s with metrics on ≥ 0.9× --metrics=false: **yes** (fulcrum 900, bound 900)"} {
		if !strings.Contains(md, want) {
			t.Errorf("many-backends markdown lacks %q:\n%s", want, md)
		}
	}
}

// TestSockmapYardstickPeer: asked for without --sockmap-yardstick, or with a path that does
// not exist, the peer is skipped with a message naming the flag; the prototype runs as
// `serve --listen L --backends B1,B2`.
func TestSockmapYardstickPeer(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	for given, want := range map[string]string{
		"":      "skipping sockmap-yardstick: no sockmap-yardstick given (--sockmap-yardstick PATH: its binary, or its folder to build)",
		missing: "skipping sockmap-yardstick: --sockmap-yardstick " + missing + ": ",
	} {
		rep := &Report{}
		cc := CompareConfig{Exe: "/nonexistent/fulcrum", Peers: []string{SockmapYardstick}, SockmapYardstick: given, Out: &strings.Builder{}}
		if peers := cc.startPeers(t.TempDir(), []string{"127.0.0.1:1"}, rep); len(peers) != 0 ||
			len(rep.Skipped) != 1 || !strings.HasPrefix(rep.Skipped[0], want) {
			t.Errorf("--sockmap-yardstick %q: %d started, skipped %q, want %q", given, len(peers), rep.Skipped, want)
		}
	}

	// A stand-in that writes down its arguments and exits: the start fails, and says so.
	dir := t.TempDir()
	args := filepath.Join(dir, "args")
	bin := filepath.Join(dir, "smy")
	os.WriteFile(bin, []byte("#!/bin/sh\necho \"$@\" > "+args+"\necho cannot load the program >&2\nexit 1\n"), 0o755)
	_, _, err := startSockmapYardstick(newRuler(SockmapYardstick, bin, dir), []string{"127.0.0.1:1", "127.0.0.1:2"})
	if err == nil || !strings.Contains(err.Error(), "cannot load the program") {
		t.Errorf("a prototype that exits at start: %v, want its message", err)
	}
	got, _ := os.ReadFile(args)
	if ok, _ := regexp.MatchString(`^serve --listen 127\.0\.0\.1:\d+ --backends 127\.0\.0\.1:1,127\.0\.0\.1:2\n$`, string(got)); !ok {
		t.Errorf("the prototype ran with %q, want serve --listen ADDR --backends 127.0.0.1:1,127.0.0.1:2", got)
	}
}
