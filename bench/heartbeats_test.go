package bench

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBackendAddr(t *testing.T) {
	for _, tc := range []struct {
		i    int
		host string
		port int
	}{{0, "127.1.0.1", 1024}, {59999, "127.1.0.1", 61023}, {60000, "127.1.1.1", 1024}, {125000, "127.1.2.1", 6024}} {
		if h, p := backendAddr(tc.i); h != tc.host || p != tc.port {
			t.Errorf("backendAddr(%d) = %s:%d, want %s:%d", tc.i, h, p, tc.host, tc.port)
		}
	}
	seen := map[string]bool{}
	for i := range 150000 {
		h, p := backendAddr(i)
		k := net.JoinHostPort(h, strconv.Itoa(p))
		if seen[k] || p < 1 || p > 65535 {
			t.Fatalf("backend %d: %s repeats or is out of range", i, k)
		}
		seen[k] = true
	}
}

// TestSendHeartbeats: every backend is added once with the token, over few keep-alive
// connections, through a server that closes some of them and refuses one request.
func TestSendHeartbeats(t *testing.T) {
	var (
		mu    sync.Mutex
		added = map[string]int{}
		conns atomic.Int64
		calls atomic.Int64
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if r.URL.Path != "/upstream/add" || r.Header.Get("Authorization") != "Bearer T0K" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if n == 7 {
			http.Error(w, "refused once", http.StatusTooManyRequests)
			return
		}
		if n%50 == 0 {
			w.Header().Set("Connection", "close") // the client must reconnect
		}
		mu.Lock()
		added[net.JoinHostPort(r.URL.Query().Get("host"), r.URL.Query().Get("port"))]++
		mu.Unlock()
		w.Write([]byte(`{"success":true}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	const count, clients = 500, 4
	var next atomic.Int64
	l := sendHeartbeats(context.Background(), strings.TrimPrefix(srv.URL, "http://"), "T0K", clients, time.Now().Add(time.Minute),
		func() (int, bool) {
			i := int(next.Add(1)) - 1
			return i, i < count
		})
	if l.done != count-1 || l.errs != 1 || l.firstErr == nil || !strings.Contains(l.firstErr.Error(), "429") {
		t.Errorf("done %d, errors %d (%v); want %d and the one 429", l.done, l.errs, l.firstErr, count-1)
	}
	if len(added) != count-1 {
		t.Errorf("%d distinct backends added, want %d", len(added), count-1)
	}
	if n := conns.Load(); n > clients+int64(count/50)+1 {
		t.Errorf("%d connections for %d requests: keep-alive not used", n, count)
	}
}

// TestSendHeartbeatsGivesUp: with nothing listening, the senders stop after a bounded run
// of failures instead of spinning until the deadline.
func TestSendHeartbeatsGivesUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	l := sendHeartbeats(context.Background(), addr, "x", 2, time.Now().Add(time.Hour), func() (int, bool) { return 0, true })
	if l.done != 0 || l.errs != 2*maxFailing {
		t.Errorf("done %d, errors %d; want 0 and %d", l.done, l.errs, 2*maxFailing)
	}
}
