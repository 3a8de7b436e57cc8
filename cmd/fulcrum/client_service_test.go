package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/pool"
)

// servicesAdmin is a real admin.API over two services, db and web (no default), served by
// httptest, that remembers whether each request carried a service parameter and which.
type servicesAdmin struct {
	*httptest.Server
	pools map[string]*pool.Pool
	mu    sync.Mutex
	sent  []string // per request: "path service=NAME", or "path" without one
}

func startServicesAdmin(t *testing.T) *servicesAdmin {
	t.Helper()
	sa := &servicesAdmin{pools: map[string]*pool.Pool{}}
	api := &admin.API{Logger: quiet}
	for _, name := range []string{"db", "web"} {
		sa.pools[name] = &pool.Pool{TTL: time.Minute, Logger: quiet}
		api.Services = append(api.Services, admin.Service{Name: name, Registry: sa.pools[name]})
	}
	h := api.Handler()
	sa.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Errorf("client sent an unreadable form: %v", err)
		}
		seen := r.URL.Path
		if v, ok := r.Form["service"]; ok {
			seen += " service=" + strings.Join(v, ",")
		}
		sa.mu.Lock()
		sa.sent = append(sa.sent, seen)
		sa.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(sa.Close)
	return sa
}

// last is what the last request carried; "" before any.
func (sa *servicesAdmin) last() string {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	if len(sa.sent) == 0 {
		return ""
	}
	return sa.sent[len(sa.sent)-1]
}

func (sa *servicesAdmin) requests() int {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	return len(sa.sent)
}

func (sa *servicesAdmin) state(service, key string) pool.State {
	st, ok := sa.pools[service].Lookup(key)
	if !ok {
		return ""
	}
	return st.State
}

// TestClientService: --service and FULCRUM_SERVICE send the service parameter to every change
// and to status; without them none is sent, and the balancer's default applies.
func TestClientService(t *testing.T) {
	sa := startServicesAdmin(t)
	t.Setenv("FULCRUM_ADMIN_URL", sa.URL)
	const key = "10.0.0.5:8080"
	run := func(t *testing.T, wantSent, wantOut string, args ...string) string {
		t.Helper()
		out, err := opsRunCLI(t, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		if got := sa.last(); got != wantSent {
			t.Errorf("%v sent %q, want %q", args, got, wantSent)
		}
		if wantOut != "" && strings.TrimSpace(out) != wantOut {
			t.Errorf("%v printed %q, want %q", args, out, wantOut)
		}
		return out
	}
	run(t, "/upstream/add service=db", "added "+key+" in service db", "add", "--service", "db", "--host", "10.0.0.5", "--port", "8080", "--weight", "3")
	t.Run("FULCRUM_SERVICE", func(t *testing.T) {
		t.Setenv("FULCRUM_SERVICE", "web")
		run(t, "/upstream/add service=web", "added "+key+" in service web", "add", "--host", "10.0.0.5", "--port", "8080")
		out := run(t, "/upstream/status service=web", "", "status")
		checkTable(t, out, [][]string{
			{"BACKEND", "STATE", "WEIGHT", "ACTIVE", "TOTAL", "HEARTBEAT AGE"},
			{regexp.QuoteMeta(key), "up", "1", "0", "0", `\d+(\.\d)?m?s`},
		})
		if !strings.Contains(out, "\nservice web: 1 backend, 0 active connections\n") {
			t.Errorf("status footer:\n%s", out)
		}
	})
	out := run(t, "/upstream/status", "", "status")
	checkTable(t, out, [][]string{
		{"SERVICE", "BACKEND", "STATE", "WEIGHT", "ACTIVE", "TOTAL", "HEARTBEAT AGE"},
		{"db", regexp.QuoteMeta(key), "up", "3", "0", "0", `\d+(\.\d)?m?s`},
		{"web", regexp.QuoteMeta(key), "up", "1", "0", "0", `\d+(\.\d)?m?s`},
	})
	if !strings.Contains(out, "\n2 services, 2 backends, 0 active connections\n") {
		t.Errorf("status footer:\n%s", out)
	}

	run(t, "/upstream/drain service=db", "draining "+key+" in service db", "drain", "--service", "db", "--host", "10.0.0.5", "--port", "8080")
	if db, web := sa.state("db", key), sa.state("web", key); db != pool.StateDraining || web != pool.StateUp {
		t.Errorf("after drain in db: db %q, web %q", db, web)
	}
	run(t, "/upstream/undrain service=db", "undrained "+key+" in service db", "undrain", "--service", "db", "--host", "10.0.0.5", "--port", "8080")
	run(t, "/upstream/remove service=web", "removed "+key+" in service web", "remove", "--service", "web", "--host", "10.0.0.5", "--port", "8080")
	if db, web := sa.state("db", key), sa.state("web", key); db != pool.StateUp || web != "" {
		t.Errorf("after undrain in db and remove from web: db %q, web %q", db, web)
	}
}

func TestClientServiceErrors(t *testing.T) {
	sa := startServicesAdmin(t)
	t.Setenv("FULCRUM_ADMIN_URL", sa.URL)
	for _, tc := range []struct {
		name     string
		args     []string
		want     []string
		wantSent string // what the request carried; "-" for no request at all
	}{
		{"unknown service", []string{"add", "--service", "cache", "--host", "10.0.0.1", "--port", "80"}, []string{"404 Not Found", `service "cache" is not configured`}, "/upstream/add service=cache"},
		{"status of an unknown service", []string{"status", "--service", "cache"}, []string{"status:", "404"}, "/upstream/status service=cache"},
		{"no service: the default, not configured here", []string{"drain", "--host", "10.0.0.1", "--port", "80"}, []string{"404", `service "default"`}, "/upstream/drain"},
		{"malformed, refused before sending", []string{"remove", "--service", "DB", "--host", "10.0.0.1", "--port", "80"}, []string{"--service", `"DB"`}, "-"},
		{"malformed status", []string{"status", "--service", "a/b"}, []string{"--service"}, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := sa.requests()
			_, err := opsRunCLI(t, tc.args...)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			switch {
			case tc.wantSent == "-" && sa.requests() != before:
				t.Errorf("a request was sent: %q", sa.last())
			case tc.wantSent != "-" && sa.last() != tc.wantSent:
				t.Errorf("sent %q, want %q", sa.last(), tc.wantSent)
			}
		})
	}
	if n := sa.pools["db"].Len() + sa.pools["web"].Len(); n != 0 {
		t.Errorf("failed calls changed a registry: %d backends", n)
	}
}

// TestClientHeartbeatService: the agent registers and heartbeats its backend in the service
// named, and deregisters it from that service when it stops.
func TestClientHeartbeatService(t *testing.T) {
	sa := startServicesAdmin(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		app := newApp(testUpgrades)
		var out strings.Builder
		app.Writer, app.ErrWriter = &out, &out
		done <- app.RunContext(ctx, []string{"fulcrum", "heartbeat", "--admin", sa.URL, "--service", "web",
			"--host", "10.0.0.9", "--port", "9000", "--interval", "50ms", "--log-level", "error"})
	}()
	const key = "10.0.0.9:9000"
	waitFor(t, "registration in web", func() bool { return sa.state("web", key) == pool.StateUp })
	first, _ := sa.pools["web"].Lookup(key)
	waitFor(t, "a heartbeat in web", func() bool {
		st, _ := sa.pools["web"].Lookup(key)
		return st.LastHeartbeat.After(first.LastHeartbeat)
	})
	if sa.state("db", key) != "" {
		t.Error("the agent's backend reached db")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the agent did not stop")
	}
	if st := sa.state("web", key); st != "" {
		t.Errorf("after the agent stopped the backend is %q in web, want deregistered", st)
	}
	if got := sa.last(); got != "/upstream/remove service=web" {
		t.Errorf("the agent's last request %q, want a remove in web", got)
	}
}
