package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fulcrumlb/fulcrum/internal/testbed"
	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// metricsFlagValue runs serve's flag parsing on args and returns --metrics.
func metricsFlagValue(t *testing.T, args ...string) bool {
	t.Helper()
	var got bool
	app := &cli.App{Name: "fulcrum", Commands: []*cli.Command{{
		Name: "serve", Flags: serveFlags(),
		Action: func(c *cli.Context) error { got = c.Bool("metrics"); return nil },
	}}}
	if err := app.Run(append([]string{"fulcrum", "serve"}, args...)); err != nil {
		t.Fatalf("serve %q: %v", args, err)
	}
	return got
}

func TestMetricsFlag(t *testing.T) {
	if !metricsFlagValue(t) {
		t.Error("--metrics is off by default, want on")
	}
	if metricsFlagValue(t, "--metrics=false") {
		t.Error("--metrics=false left metrics on")
	}
	t.Setenv("FULCRUM_METRICS", "false")
	if metricsFlagValue(t) {
		t.Error("FULCRUM_METRICS=false left metrics on")
	}
}

// TestObserversAndAPI: the observer list always counts backends' bytes; metrics are built,
// observed and served only with --metrics; the access log joins the same list.
func TestObserversAndAPI(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(map[bool]string{true: "metrics", false: "no-metrics"}[on], func(t *testing.T) {
			ln, adminLn := opsLoopback(t), opsLoopback(t)
			cfg := &config{metrics: on, sec: &securityConfig{}, log: quiet, policy: pool.LeastConn}
			sp := &servicePool{cfg: defaultService(cfg), pool: &pool.Pool{Logger: quiet}}
			obs, err := newObservers(cfg, []*servicePool{sp})
			if err != nil {
				t.Fatal(err)
			}
			sh := newShared(cfg)
			list := obs.forService(sp.cfg.name)
			svc := &service{servicePool: sp, lns: []net.Listener{ln}, srv: newServer(cfg, sp.cfg, sp.pool, list, sh)}
			api := newAPI(cfg, []*service{svc}, obs.metrics, sh, adminLn.Addr(), nil)
			if !slices.ContainsFunc(list, func(o listener.Observer) bool { return o == listener.BackendBytes{} }) {
				t.Fatal("no BackendBytes observer: backends' byte totals would not be counted")
			}
			if (api.Metrics != nil) != on {
				t.Errorf("api.Metrics set = %v, want %v", api.Metrics != nil, on)
			}
			ts := httptest.NewServer(api.Handler())
			defer ts.Close()
			want := map[bool]int{true: http.StatusOK, false: http.StatusNotFound}[on]
			if code, _ := opsHTTPGet(t, ts.URL+"/metrics"); code != want {
				t.Errorf("GET /metrics: %d, want %d", code, want)
			}
			if _, body := opsHTTPGet(t, ts.URL+"/upstream/status"); !strings.Contains(body, `"listen":["`+ln.Addr().String()+`"]`) {
				t.Errorf("status lacks the listener's address: %s", body)
			}
		})
	}
}

func opsLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func opsHTTPGet(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// opsLogBuffer collects the JSON log lines of a run, for the addresses it listened on.
type opsLogBuffer struct{ testbed.SyncBuffer }

// adminAddr is the admin address of the "fulcrum serving" record, or "" before it is logged.
func (b *opsLogBuffer) adminAddr() string {
	for _, line := range strings.Split(b.String(), "\n") {
		var rec struct{ Msg, Admin string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "fulcrum serving" {
			return rec.Admin
		}
	}
	return ""
}

// TestRunServesMetricsAndPage runs serve's run() in-process on loopback ports and reads the
// status page, /metrics and the status overview from its admin listener.
func TestRunServesMetricsAndPage(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(map[bool]string{true: "metrics", false: "no-metrics"}[on], func(t *testing.T) {
			logs := &opsLogBuffer{}
			// serve's own flag parsing builds the config; only the logger is swapped, to learn
			// the admin address that 127.0.0.1:0 got.
			app := &cli.App{Name: "fulcrum", Commands: []*cli.Command{{
				Name: "serve", Flags: serveFlags(),
				Action: func(c *cli.Context) error {
					cfg, err := parseConfig(c)
					if err != nil {
						return err
					}
					cfg.log = slog.New(slog.NewJSONHandler(logs, nil))
					return run(c.Context, cfg)
				},
			}}}
			args := []string{"fulcrum", "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
				"--drain-timeout", "1s", "--metrics=" + strconv.FormatBool(on)}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- app.RunContext(ctx, args) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("serve: %v", err)
				}
			}()
			deadline := time.Now().Add(20 * time.Second)
			for logs.adminAddr() == "" {
				if time.Now().After(deadline) {
					t.Fatal("run never logged its admin address")
				}
				time.Sleep(10 * time.Millisecond)
			}
			base := "http://" + logs.adminAddr()
			want := map[bool]int{true: http.StatusOK, false: http.StatusNotFound}[on]
			if code, body := opsHTTPGet(t, base+"/metrics"); code != want || on && !strings.Contains(body, "fulcrum_connections_active 0") {
				t.Errorf("GET /metrics: %d, want %d; body:\n%.300s", code, want, body)
			}
			if code, body := opsHTTPGet(t, base+"/"); code != http.StatusOK || !strings.Contains(body, "<table") {
				t.Errorf("GET /: %d %.100q", code, body)
			}
			if _, body := opsHTTPGet(t, base+"/upstream/status"); !strings.Contains(body, `"uptime_seconds"`) {
				t.Errorf("status without the overview: %s", body)
			}
		})
	}
}

// TestMetricsFromConfigFile: metrics: false in the config file turns metrics off; the flag
// still overrides the file.
func TestMetricsFromConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fulcrum.yaml")
	if err := os.WriteFile(path, []byte("metrics: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"--config", path}, false},
		{[]string{"--config", path, "--metrics=true"}, true},
	} {
		c, err := serveContext(t, tc.args...)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Bool("metrics"); got != tc.want {
			t.Errorf("serve %q: metrics %v, want %v", tc.args, got, tc.want)
		}
	}
}
