package admin

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// serve runs h on a real loopback listener with NewServer's limits; tweak, if not nil, may
// change the server first (a short ReadHeaderTimeout for the slowloris test).
func serve(t *testing.T, h http.Handler, tweak func(*http.Server)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ln.Addr().String(), h)
	srv.ErrorLog = log.New(io.Discard, "", 0)
	if tweak != nil {
		tweak(srv)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func get(t *testing.T, url string, header map[string]string) (int, map[string]any) {
	t.Helper()
	r, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var reply map[string]any
	json.NewDecoder(resp.Body).Decode(&reply)
	return resp.StatusCode, reply
}

// TestForwardedForOverTCP: the same rules over a real connection, whose peer is 127.0.0.1.
func TestForwardedForOverTCP(t *testing.T) {
	cases := []struct {
		name    string
		trusted bool
		query   string
		xff     string
		code    int
		server  string
	}{
		{"untrusted: XFF ignored", false, "port=80", "198.51.100.7", 200, "127.0.0.1:80"},
		{"trusted: forwarded client", true, "port=80", "198.51.100.7", 200, "198.51.100.7:80"},
		{"trusted: forged left-most", true, "port=80&host=192.0.2.99", "127.0.0.1, 198.51.100.7", 403, ""},
		{"trusted: local client", true, "port=80&host=192.0.2.99", "127.0.0.1", 200, "192.0.2.99:80"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, _ := newAPI(t, nil)
			if c.trusted {
				a.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
			}
			addr := serve(t, a.Handler(), nil)
			before := registry(t, a)
			code, reply := get(t, "http://"+addr+"/upstream/add?"+c.query, map[string]string{"X-Forwarded-For": c.xff})
			if code != c.code {
				t.Fatalf("got %d %v, want %d", code, reply, c.code)
			}
			if code == 200 && reply["server"] != c.server {
				t.Errorf("server %v, want %s", reply["server"], c.server)
			}
			if code != 200 && registry(t, a) != before {
				t.Errorf("refused request changed the registry")
			}
		})
	}
}

func TestTokenOverTCP(t *testing.T) {
	a, _ := newAPI(t, func(s *Security) { s.Token = "tok" })
	addr := serve(t, a.Handler(), nil)
	if code, _ := get(t, "http://"+addr+"/upstream/add?port=80", nil); code != 401 {
		t.Errorf("no token: %d", code)
	}
	if code, _ := get(t, "http://"+addr+"/upstream/add?port=80", map[string]string{"Authorization": "Bearer tok"}); code != 200 {
		t.Errorf("token: %d", code)
	}
	if code, _ := get(t, "http://"+addr+"/healthz", nil); code != 200 {
		t.Errorf("healthz: %d", code)
	}
}

// rawRequest writes req on a new connection and returns the status line of the answer, or
// the error that ended the connection.
func rawRequest(t *testing.T, addr, req string) (string, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func TestOversizedHeader(t *testing.T) {
	a, _ := newAPI(t, nil)
	addr := serve(t, a.Handler(), nil)
	for _, c := range []struct {
		size int
		want string
	}{
		{15 << 10, "HTTP/1.1 200 OK"},
		{17 << 10, "HTTP/1.1 431 Request Header Fields Too Large"},
		{64 << 10, "HTTP/1.1 431 Request Header Fields Too Large"},
	} {
		t.Run(fmt.Sprint(c.size), func(t *testing.T) {
			before := registry(t, a)
			req := "GET /upstream/add?port=80 HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("p", c.size) + "\r\nConnection: close\r\n\r\n"
			line, err := rawRequest(t, addr, req)
			if line != c.want {
				t.Fatalf("%d-byte header: got %q (%v), want %q", c.size, line, err, c.want)
			}
			if c.want != "HTTP/1.1 200 OK" && registry(t, a) != before {
				t.Errorf("refused request changed the registry")
			}
		})
	}
}

func TestOversizedBody(t *testing.T) {
	a, _ := newAPI(t, nil)
	addr := serve(t, a.Handler(), nil)
	body := "port=80&host=198.51.100.7&pad=" + strings.Repeat("x", 64<<10)
	resp, err := http.Post("http://"+addr+"/upstream/add", "application/x-www-form-urlencoded", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
	if n := len(a.Registry.Snapshot()); n != 0 {
		t.Errorf("%d backends registered", n)
	}
}

// TestSlowloris: clients that trickle their headers a byte at a time neither keep others
// from being served nor keep their connections past ReadHeaderTimeout.
func TestSlowloris(t *testing.T) {
	a, _ := newAPI(t, nil)
	addr := serve(t, a.Handler(), func(s *http.Server) { s.ReadHeaderTimeout = 300 * time.Millisecond })
	const slow = 20
	var wg sync.WaitGroup
	closed := make(chan time.Duration, slow)
	for range slow {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		wg.Add(2)
		go trickle(&wg, c)
		go awaitClose(&wg, c, closed)
	}
	for range 5 {
		if code, _ := get(t, "http://"+addr+"/healthz", nil); code != 200 {
			t.Fatalf("healthz during slowloris: %d", code)
		}
	}
	for range slow {
		select {
		case d := <-closed:
			if d > 5*time.Second {
				t.Errorf("slow connection held for %v", d)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("a slow connection was never closed by the server")
		}
	}
	wg.Wait()
}

// trickle sends a request line and then one header byte every 20 ms until the server hangs
// up: the behaviour under test, not synchronisation.
func trickle(wg *sync.WaitGroup, c net.Conn) {
	defer wg.Done()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
		return
	}
	for i := 0; i < 1000; i++ {
		time.Sleep(20 * time.Millisecond)
		if _, err := c.Write([]byte{'a'}); err != nil {
			return
		}
	}
}

// awaitClose reads until the server ends the connection and reports how long that took.
func awaitClose(wg *sync.WaitGroup, c net.Conn, closed chan<- time.Duration) {
	defer wg.Done()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	io.Copy(io.Discard, c)
	closed <- time.Since(start)
	c.Close() // stops trickle
}

// TestServerLimits: NewServer sets every limit the admin port needs against hostile clients.
func TestServerLimits(t *testing.T) {
	s := NewServer("127.0.0.1:0", http.NotFoundHandler())
	if s.ReadHeaderTimeout <= 0 || s.ReadHeaderTimeout > 10*time.Second {
		t.Errorf("ReadHeaderTimeout %v, want (0, 10s]", s.ReadHeaderTimeout)
	}
	if s.ReadTimeout <= 0 || s.WriteTimeout <= 0 || s.IdleTimeout <= 0 {
		t.Errorf("timeouts %v %v %v, want all set", s.ReadTimeout, s.WriteTimeout, s.IdleTimeout)
	}
	if got := s.MaxHeaderBytes + 4096; got != 16<<10 { // net/http adds 4 KiB of slack
		t.Errorf("header limit %d, want 16 KiB", got)
	}
}
