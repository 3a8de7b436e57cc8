package admin

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/fulcrumlb/fulcrum/pool"
)

// drainAPI serves an API over a fresh pool; closed records CloseBackend calls.
func drainAPI(t *testing.T) (*pool.Pool, *httptest.Server, *[]string) {
	t.Helper()
	p := &pool.Pool{Logger: quiet}
	var closed []string
	api := &API{Registry: p, Logger: quiet, CloseBackend: func(key string) int { closed = append(closed, key); return 2 }}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return p, srv, &closed
}

// drainGet GETs path and decodes the JSON reply.
func drainGet(t *testing.T, srv *httptest.Server, path string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", path, ct)
	}
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return resp.StatusCode, body
}

func drainServer(t *testing.T, srv *httptest.Server, key string) map[string]any {
	t.Helper()
	_, body := drainGet(t, srv, "/upstream/status")
	for _, s := range body["servers"].([]any) {
		m := s.(map[string]any)
		if net.JoinHostPort(m["host"].(string), jsonInt(m["port"])) == key {
			return m
		}
	}
	return nil
}

func jsonInt(v any) string { return strconv.Itoa(int(v.(float64))) }

func TestDrainEndpoints(t *testing.T) {
	p, srv, _ := drainAPI(t)
	p.Register(pool.Address{Host: "10.0.0.1", Port: 80}, 1)
	cases := []struct {
		name string
		path string
		code int
		want map[string]any // fields the reply must have
		// state of 10.0.0.1:80 afterwards
		state string
	}{
		{"drain", "/upstream/drain?host=10.0.0.1&port=80", 200, map[string]any{"success": true, "draining": "10.0.0.1:80"}, "draining"},
		{"drain again", "/upstream/drain?host=10.0.0.1&port=80", 200, map[string]any{"success": true, "draining": "10.0.0.1:80"}, "draining"},
		{"heartbeat keeps draining", "/upstream/add?host=10.0.0.1&port=80", 200, map[string]any{"success": true}, "draining"},
		{"drain unknown", "/upstream/drain?host=10.0.0.2&port=80", 404, map[string]any{}, "draining"},
		{"drain no port", "/upstream/drain?host=10.0.0.1", 400, map[string]any{}, "draining"},
		{"drain bad host", "/upstream/drain?host=-bad-&port=80", 400, map[string]any{}, "draining"},
		{"undrain bad port", "/upstream/undrain?host=10.0.0.1&port=0", 400, map[string]any{}, "draining"},
		{"undrain unknown", "/upstream/undrain?host=10.0.0.2&port=80", 404, map[string]any{}, "draining"},
		{"undrain", "/upstream/undrain?host=10.0.0.1&port=80", 200, map[string]any{"success": true, "undrained": "10.0.0.1:80"}, "up"},
		{"undrain again", "/upstream/undrain?host=10.0.0.1&port=80", 200, map[string]any{"success": true, "undrained": "10.0.0.1:80"}, "up"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := drainGet(t, srv, tc.path)
			if code != tc.code {
				t.Fatalf("status %d, want %d (%v)", code, tc.code, body)
			}
			if code != 200 && body["error"] == nil {
				t.Fatalf("error reply without an error field: %v", body)
			}
			for k, v := range tc.want {
				if body[k] != v {
					t.Fatalf("%s = %v, want %v (%v)", k, body[k], v, body)
				}
			}
			if s := drainServer(t, srv, "10.0.0.1:80"); s["state"] != tc.state {
				t.Fatalf("state %v, want %s", s["state"], tc.state)
			}
		})
	}
}

func TestDrainWithEmptyHostIsTheCaller(t *testing.T) {
	p, srv, _ := drainAPI(t)
	p.Register(pool.Address{Host: "127.0.0.1", Port: 81}, 1)
	code, body := drainGet(t, srv, "/upstream/drain?port=81")
	if code != 200 || body["draining"] != "127.0.0.1:81" {
		t.Fatalf("%d %v", code, body)
	}
}

func TestStatusShowsLastError(t *testing.T) {
	p, srv, _ := drainAPI(t)
	p.Register(pool.Address{Host: "10.0.0.1", Port: 80}, 1)
	p.Register(pool.Address{Host: "10.0.0.1", Port: 81}, 1)
	b, err := p.Acquire(netip.Addr{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	p.ReportDial(b, refused)
	p.Release(b)
	down := drainServer(t, srv, b.Key())
	if down["state"] != "down" || down["last_error"] != refused.Error() || down["last_error_time"].(float64) <= 0 {
		t.Fatalf("down backend: %v", down)
	}
	other := "10.0.0.1:81"
	if b.Key() == other {
		other = "10.0.0.1:80"
	}
	up := drainServer(t, srv, other)
	if up["state"] != "up" || up["last_error"] != "" || up["last_error_time"].(float64) != 0 {
		t.Fatalf("healthy backend: %v", up)
	}
}

func TestRemoveForce(t *testing.T) {
	cases := []struct {
		name   string
		query  string
		code   int
		closed []string // CloseBackend calls
	}{
		{"plain", "", 200, nil},
		{"force", "&force=1", 200, []string{"10.0.0.1:80"}},
		{"force false", "&force=0", 200, nil},
		{"bad force", "&force=maybe", 400, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, srv, closed := drainAPI(t)
			p.Register(pool.Address{Host: "10.0.0.1", Port: 80}, 1)
			code, body := drainGet(t, srv, "/upstream/remove?host=10.0.0.1&port=80"+tc.query)
			if code != tc.code {
				t.Fatalf("status %d, want %d (%v)", code, tc.code, body)
			}
			if len(*closed) != len(tc.closed) || len(tc.closed) > 0 && (*closed)[0] != tc.closed[0] {
				t.Fatalf("CloseBackend calls %v, want %v", *closed, tc.closed)
			}
			if len(tc.closed) > 0 && body["closed"] != float64(2) {
				t.Fatalf("reply %v lacks closed: 2", body)
			}
			if tc.code != 200 && p.Len() != 1 || tc.code == 200 && p.Len() != 0 {
				t.Fatalf("%d backends left after %s", p.Len(), tc.name)
			}
		})
	}
}
