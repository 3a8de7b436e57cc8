package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/testbed"
)

// resFreeAddr is a loopback address with a port free a moment ago.
func resFreeAddr(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(testbed.FreePort(t)))
}

// resServe runs `fulcrum serve` in-process with args until the test ends; it returns the
// balanced and admin addresses once the admin API answers.
func resServe(t *testing.T, args ...string) (listen, adm string) {
	t.Helper()
	listen, adm = resFreeAddr(t), resFreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	argv := slices.Concat([]string{"fulcrum", "serve", "--listen", listen, "--admin", adm, "--log-level", "error", "--drain-timeout", "5s"}, serveTestArgs(t, args), args)
	go func() { done <- newApp(testUpgrades).RunContext(ctx, argv) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	waitFor(t, "admin up", func() bool {
		select {
		case err := <-done:
			t.Fatalf("serve ended: %v", err)
		default:
		}
		resp, err := http.Get("http://" + adm + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return listen, adm
}

func resAdmin(t *testing.T, adm, path string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get("http://" + adm + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func resAdd(t *testing.T, adm, backend string) {
	t.Helper()
	h, p, _ := net.SplitHostPort(backend)
	if code, body := resAdmin(t, adm, "/upstream/add?host="+h+"&port="+p); code != 200 {
		t.Fatalf("add %s: %d %v", backend, code, body)
	}
}

func resServer(t *testing.T, adm, key string) map[string]any {
	t.Helper()
	_, body := resAdmin(t, adm, "/upstream/status")
	for _, s := range body["servers"].([]any) {
		m := s.(map[string]any)
		if h, _, _ := net.SplitHostPort(key); m["host"] == h && strings.HasSuffix(key, ":"+jsonPort(m)) {
			return m
		}
	}
	return nil
}

func jsonPort(m map[string]any) string {
	b, _ := json.Marshal(m["port"])
	return string(b)
}

func resEchoes(t *testing.T, c net.Conn, msg string) bool {
	t.Helper()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		return false
	}
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return err == nil && string(buf) == msg
}

func resDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestServeLimitsFromEnv sets --max-conns and --idle-timeout through their FULCRUM_ variables.
func TestServeLimitsFromEnv(t *testing.T) { eachPlane(t, testServeLimitsFromEnv) }

func testServeLimitsFromEnv(t *testing.T) {
	t.Setenv("FULCRUM_MAX_CONNS", "1")
	t.Setenv("FULCRUM_IDLE_TIMEOUT", "400ms")
	listen, _ := resServe(t, "--backend", startBackend(t, echoHandler).Addr(), "--health-interval", "0")
	first := resDial(t, listen)
	if !resEchoes(t, first, "1") {
		t.Fatal("first client not served")
	}
	second := resDial(t, listen)
	io.WriteString(second, "2")
	// The first goes idle and is closed after 400 ms; only then is the second accepted.
	first.SetReadDeadline(time.Now().Add(15 * time.Second))
	var ne net.Error
	if _, err := io.ReadAll(first); errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("idle client not closed by --idle-timeout")
	}
	buf := make([]byte, 1)
	second.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.ReadFull(second, buf); err != nil {
		t.Fatalf("second client not served once the first was closed: %v", err)
	}
}

// TestServeHealthDrainAndForce drives checks, drain and forced removal through the admin API.
func TestServeHealthDrainAndForce(t *testing.T) { eachPlane(t, testServeHealthDrainAndForce) }

func testServeHealthDrainAndForce(t *testing.T) {
	listen, adm := resServe(t, "--health-interval", "20ms", "--health-fall", "1", "--connect-timeout", "2s")
	live := startBackend(t, echoHandler).Addr()
	dead := resFreeAddr(t)
	resAdd(t, adm, live)
	resAdd(t, adm, dead)
	waitFor(t, "dead backend down by checks", func() bool {
		s := resServer(t, adm, dead)
		return s["state"] == "down" && s["last_error"] != "" && s["last_error_time"].(float64) > 0
	})

	c := resDial(t, listen)
	if !resEchoes(t, c, "x") {
		t.Fatal("no echo through the live backend")
	}
	h, p, _ := net.SplitHostPort(live)
	if code, body := resAdmin(t, adm, "/upstream/drain?host="+h+"&port="+p); code != 200 || body["draining"] != live {
		t.Fatalf("drain: %d %v", code, body)
	}
	resAdd(t, adm, live) // a heartbeat does not end draining
	if s := resServer(t, adm, live); s["state"] != "draining" || s["conn_count"] != float64(1) {
		t.Fatalf("drained backend: %v", s)
	}
	if !resEchoes(t, c, "y") {
		t.Fatal("established connection cut by drain")
	}
	code, body := resAdmin(t, adm, "/upstream/remove?host="+h+"&port="+p+"&force=1")
	if code != 200 || body["closed"] != float64(1) {
		t.Fatalf("remove?force=1: %d %v", code, body)
	}
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	var ne net.Error
	if _, err := io.ReadAll(c); errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("remove?force=1 left the established connection open")
	}
	waitFor(t, "removed backend forgotten", func() bool { return resServer(t, adm, live) == nil })
}

func TestResilienceFlagErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--health-fall", "0"}, "--health-fall"},
		{[]string{"--health-rise", "-1"}, "--health-rise"},
		{[]string{"--health-interval", "-1s"}, "--health-interval"},
		{[]string{"--slow-start", "-1s"}, "--slow-start"},
		{[]string{"--max-conns", "-1"}, "--max-conns"},
		{[]string{"--max-conns-per-backend", "-2"}, "--max-conns-per-backend"},
		{[]string{"--queue-timeout", "-1s"}, "--queue-timeout"},
		{[]string{"--idle-timeout", "-1s"}, "--idle-timeout"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			argv := append([]string{"fulcrum", "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"}, tc.args...)
			err := newApp(testUpgrades).Run(argv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one naming %s", err, tc.want)
			}
		})
	}
}
