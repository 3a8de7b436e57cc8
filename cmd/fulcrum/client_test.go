package main

import (
	"encoding/json"
	"log/slog"
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

// testAdmin is a real admin.API over a real pool, served by httptest, that remembers the
// Authorization headers it was sent.
type testAdmin struct {
	*httptest.Server
	pool *pool.Pool
	mu   sync.Mutex
	auth []string
}

func startTestAdmin(t *testing.T) *testAdmin {
	t.Helper()
	ta := &testAdmin{pool: &pool.Pool{TTL: time.Minute, Logger: quiet}}
	api := (&admin.API{Registry: ta.pool, Logger: quiet}).Handler()
	ta.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ta.mu.Lock()
		ta.auth = append(ta.auth, r.Header.Get("Authorization"))
		ta.mu.Unlock()
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(ta.Close)
	return ta
}

func (ta *testAdmin) authHeaders() []string {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return append([]string(nil), ta.auth...)
}

// opsRunCLI runs the fulcrum app in-process and returns what it printed.
func opsRunCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut strings.Builder
	app := newApp(testUpgrades)
	app.Writer, app.ErrWriter = &out, &errOut
	err := app.Run(append([]string{"fulcrum"}, args...))
	return out.String() + errOut.String(), err
}

func TestClientAddStatusRemove(t *testing.T) {
	ta := startTestAdmin(t)
	t.Setenv("FULCRUM_ADMIN_URL", ta.URL)
	t.Setenv("FULCRUM_ADMIN_TOKEN", "s3cret")

	out, err := opsRunCLI(t, "add", "--host", "10.0.0.5", "--port", "8080", "--weight", "3")
	if err != nil || strings.TrimSpace(out) != "added 10.0.0.5:8080" {
		t.Fatalf("add: %q, %v", out, err)
	}
	if _, err := opsRunCLI(t, "add", "--host", "10.0.0.6", "--port", "5432"); err != nil {
		t.Fatal(err)
	}
	out, err = opsRunCLI(t, "status")
	if err != nil {
		t.Fatal(err)
	}
	checkTable(t, out, [][]string{
		{"BACKEND", "STATE", "WEIGHT", "ACTIVE", "TOTAL", "HEARTBEAT AGE"},
		{"10.0.0.5:8080", "up", "3", "0", "0", `\d+(\.\d)?m?s`},
		{"10.0.0.6:5432", "up", "1", "0", "0", `\d+(\.\d)?m?s`},
	})
	if !strings.Contains(out, "2 backends, 0 active connections") {
		t.Errorf("status footer missing:\n%s", out)
	}

	out, err = opsRunCLI(t, "remove", "--host", "10.0.0.5", "--port", "8080")
	if err != nil || strings.TrimSpace(out) != "removed 10.0.0.5:8080" {
		t.Fatalf("remove: %q, %v", out, err)
	}
	if snap := ta.pool.Snapshot(); len(snap) != 1 || snap[0].Key != "10.0.0.6:5432" {
		t.Errorf("registry after remove: %+v", snap)
	}
	for _, h := range ta.authHeaders() {
		if h != "Bearer s3cret" {
			t.Errorf("Authorization %q, want the token from FULCRUM_ADMIN_TOKEN", h)
		}
	}
}

// checkTable matches each printed row's columns against regexps and checks that every column
// starts where its header does.
func checkTable(t *testing.T, out string, want [][]string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < len(want) {
		t.Fatalf("table has %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	column := regexp.MustCompile(`\S+( \S+)*`) // a column may hold single spaces
	header := column.FindAllStringIndex(lines[0], -1)
	for i, row := range want {
		cols := column.FindAllStringIndex(lines[i], -1)
		if len(cols) != len(row) {
			t.Fatalf("line %q: %d columns, want %d", lines[i], len(cols), len(row))
		}
		for j, re := range row {
			if text := lines[i][cols[j][0]:cols[j][1]]; !regexp.MustCompile("^" + re + "$").MatchString(text) {
				t.Errorf("line %d column %d = %q, want %q", i, j, text, re)
			}
			if cols[j][0] != header[j][0] {
				t.Errorf("line %q: column %d starts at %d, its header at %d", lines[i], j, cols[j][0], header[j][0])
			}
		}
	}
}

func TestClientStatusJSON(t *testing.T) {
	ta := startTestAdmin(t)
	ta.pool.RegisterStatic(pool.Address{Host: "::1", Port: 9}, 1)
	out, err := opsRunCLI(t, "status", "--admin", strings.TrimPrefix(ta.URL, "http://"), "--json")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Servers []map[string]any `json:"servers"`
		Total   int              `json:"total"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Total != 1 || st.Servers[0]["state"] != "static" {
		t.Fatalf("status --json: %q (%v)", out, err)
	}
	out, err = opsRunCLI(t, "status", "--admin", ta.URL)
	if err != nil {
		t.Fatal(err)
	}
	checkTable(t, out, [][]string{{"BACKEND", "STATE", "WEIGHT", "ACTIVE", "TOTAL", "HEARTBEAT AGE"}, {`\[::1\]:9`, "static", "1", "0", "0", "-"}})
	if !strings.Contains(out, "\n1 backend, 0 active connections\n") {
		t.Errorf("status footer:\n%s", out)
	}
	if len(ta.authHeaders()) == 0 || ta.authHeaders()[0] != "" {
		t.Errorf("sent Authorization %q without a token", ta.authHeaders())
	}
}

func TestClientDrainUndrain(t *testing.T) {
	ta := startTestAdmin(t)
	t.Setenv("FULCRUM_ADMIN_URL", ta.URL)
	ta.pool.Register(pool.Address{Host: "10.0.0.7", Port: 80}, 1)
	if out, err := opsRunCLI(t, "drain", "--host", "10.0.0.7", "--port", "80"); err != nil || strings.TrimSpace(out) != "draining 10.0.0.7:80" {
		t.Fatalf("drain: %q, %v", out, err)
	}
	if st, _ := backendStatus(ta.pool, "10.0.0.7:80"); st.State != pool.StateDraining {
		t.Errorf("after drain the backend is %q", st.State)
	}
	if out, err := opsRunCLI(t, "status"); err != nil || !regexp.MustCompile(`10\.0\.0\.7:80\s+draining\s`).MatchString(out) {
		t.Errorf("status after drain: %v\n%s", err, out)
	}
	if out, err := opsRunCLI(t, "undrain", "--host", "10.0.0.7", "--port", "80"); err != nil || strings.TrimSpace(out) != "undrained 10.0.0.7:80" {
		t.Fatalf("undrain: %q, %v", out, err)
	}
	if st, _ := backendStatus(ta.pool, "10.0.0.7:80"); st.State != pool.StateUp {
		t.Errorf("after undrain the backend is %q", st.State)
	}
}

// API errors come back as errors naming the status and the API's own message.
func TestClientErrors(t *testing.T) {
	ta := startTestAdmin(t)
	t.Setenv("FULCRUM_ADMIN_URL", ta.URL)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"remove unknown", []string{"remove", "--host", "10.9.9.9", "--port", "1"}, []string{"remove:", "404 Not Found", "backend 10.9.9.9:1 is not registered"}},
		{"bad port", []string{"add", "--host", "10.0.0.1", "--port", "70000"}, []string{"add:", "400 Bad Request", "port \"70000\""}},
		{"bad weight", []string{"add", "--host", "10.0.0.1", "--port", "80", "--weight", "999"}, []string{"400 Bad Request", "weight"}},
		{"drain unknown", []string{"drain", "--host", "10.9.9.9", "--port", "1"}, []string{"drain:", "404", "is not registered"}},
		{"unreachable", []string{"status", "--admin", closed.URL}, []string{"status:", closed.URL, "connection refused"}},
		{"bad url", []string{"status", "--admin", "ftp://x"}, []string{"--admin", "want http://host:port"}},
		{"missing host", []string{"add", "--port", "80"}, []string{"host"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := opsRunCLI(t, tc.args...)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if n := len(ta.pool.Snapshot()); n != 0 {
		t.Errorf("failed calls changed the registry: %d backends", n)
	}
}

func TestHeartbeatTiming(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 200 {
		d := jitter(10 * time.Second)
		if d < 8*time.Second || d > 10*time.Second {
			t.Fatalf("jitter(10s) = %v, want 8s..10s", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Errorf("jitter is not random: %d distinct waits", len(seen))
	}
	var b time.Duration
	var got []time.Duration
	for range 8 {
		b = nextBackoff(b, 10*time.Second)
		got = append(got, b)
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second, 10 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("backoff steps %v, want %v", got, want)
		}
	}
}

// quiet is the discard logger of every test in this package.
var quiet = slog.New(slog.DiscardHandler)
