package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/fulcrumlb/fulcrum/admin"
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

func TestWireOperating(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(map[bool]string{true: "metrics", false: "no-metrics"}[on], func(t *testing.T) {
			p := &pool.Pool{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			ln, adminLn := opsLoopback(t), opsLoopback(t)
			srv := &listener.Server{Picker: p}
			api := &admin.API{Registry: p}
			if err := wireOperating(&config{metrics: on}, p, srv, api, ln, adminLn); err != nil {
				t.Fatal(err)
			}
			if srv.Observer == nil {
				t.Fatal("no observer: backends' byte totals would not be counted")
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

func TestAddObserverKeepsTheOther(t *testing.T) {
	first := listener.BackendBytes{}
	if got := addObserver(nil, first); got != listener.Observer(first) {
		t.Errorf("addObserver(nil, o) = %v, want o", got)
	}
	both, ok := addObserver(first, first).(listener.Observers)
	if !ok || len(both) != 2 {
		t.Errorf("addObserver(have, o) = %v, want both", both)
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
