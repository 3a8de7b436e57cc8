package listener

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/fulcrumlb/fulcrum/pool"
)

// quiet keeps the tests' logs out of the output.
// quiet is the discard logger of every test inside the package.
var quiet = slog.New(slog.DiscardHandler)

// ppBackendConn is what a PROXY-aware test backend saw on one connection.
type ppBackendConn struct {
	header *proxyproto.Header // nil when the connection had none
	err    error              // from proxyproto.Read; ErrNoProxyProtocol when none was sent
}

// ppBackend is a backend that parses an optional PROXY header, reports it, then echoes the
// rest of the stream and half-closes. greeting, if set, is sent first (a server-first protocol).
type ppBackend struct {
	ln       net.Listener
	seen     chan ppBackendConn
	accepted chan struct{}
	greeting string
}

func startPPBackend(t *testing.T, network, greeting string) *ppBackend {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "tcp6" {
		addr = "[::1]:0"
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("listen %s: %v", addr, err)
	}
	b := &ppBackend{ln: ln, seen: make(chan ppBackendConn, 16), accepted: make(chan struct{}, 16), greeting: greeting}
	serveBackend(t, ln, b.serve)
	return b
}

func (b *ppBackend) serve(c *net.TCPConn) {
	b.accepted <- struct{}{}
	defer c.Close()
	if b.greeting != "" {
		c.Write([]byte(b.greeting))
	}
	br := bufio.NewReader(c)
	h, err := proxyproto.Read(br)
	b.seen <- ppBackendConn{header: h, err: err}
	io.Copy(c, br)
	c.CloseWrite()
}

func (b *ppBackend) addr() pool.Address {
	ap := b.ln.Addr().(*net.TCPAddr).AddrPort()
	return pool.Address{Host: ap.Addr().Unmap().String(), Port: int(ap.Port())}
}

func (b *ppBackend) next(t *testing.T) ppBackendConn {
	t.Helper()
	select {
	case c := <-b.seen:
		return c
	case <-time.After(15 * time.Second):
		t.Fatal("backend saw no connection")
	}
	return ppBackendConn{}
}

// ppObserver records connection events.
type ppObserver struct {
	mu       sync.Mutex
	rejected []error
	closed   []ConnInfo
	traffic  []Traffic
}

func (o *ppObserver) Rejected(_ netip.AddrPort, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.rejected = append(o.rejected, err)
}
func (o *ppObserver) DialFailed(*pool.Backend, error) {}
func (o *ppObserver) Opened(*ConnInfo) Meter          { return nil }
func (o *ppObserver) Closed(c *ConnInfo, t Traffic) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = append(o.closed, *c)
	o.traffic = append(o.traffic, t)
}

func (o *ppObserver) counts() (rejected, closed int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.rejected), len(o.closed)
}

// recordingPicker remembers the client address each Acquire was asked for.
type recordingPicker struct {
	*pool.Pool
	mu      sync.Mutex
	clients []netip.Addr
}

func (r *recordingPicker) Acquire(client netip.Addr, exclude []*pool.Backend) (*pool.Backend, error) {
	r.mu.Lock()
	r.clients = append(r.clients, client)
	r.mu.Unlock()
	return r.Pool.Acquire(client, exclude)
}

// startPPServer runs a Server with the given PROXY settings in front of backends, on network's
// loopback address.
func startPPServer(t *testing.T, network string, pp ProxyProtocol, obs Observer, picker pool.Picker) string {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "tcp6" {
		addr = "[::1]:0"
	}
	return startPPServerAt(t, network, addr, pp, obs, picker)
}

// startPPServerAt is startPPServer listening at addr (a wildcard address, say).
func startPPServerAt(t *testing.T, network, addr string, pp ProxyProtocol, obs Observer, picker pool.Picker) string {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("listen %s: %v", addr, err)
	}
	return serveUntilCleanup(t, ln, &Server{Picker: picker, ProxyProtocol: pp, Observer: obs, ConnectTimeout: 10 * time.Second, Logger: quiet, DataPlane: planeOf(t)})
}

// serveUntilCleanup serves s on ln until the test's cleanup shuts it down (and checks that
// Serve then returned ErrServerClosed); it returns ln's address.
func serveUntilCleanup(t *testing.T, ln net.Listener, s *Server) string {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func poolOf(t *testing.T, backends ...*ppBackend) *pool.Pool {
	t.Helper()
	p := &pool.Pool{Logger: quiet}
	for _, b := range backends {
		if err := p.RegisterStatic(b.addr(), 1); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// ppRoundTrip sends payload (after prefix), half-closes and returns what came back.
func ppRoundTrip(t *testing.T, c *net.TCPConn, prefix, payload []byte) []byte {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(append(append([]byte{}, prefix...), payload...)); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("close write: %v", err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return got
}

func dialTCP(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func TestProxyProtocolSend(t *testing.T) { eachPlane(t, testProxyProtocolSend) }

func testProxyProtocolSend(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		for _, v := range []byte{1, 2} {
			t.Run(network+"/v"+string('0'+v), func(t *testing.T) {
				be := startPPBackend(t, network, "")
				addr := startPPServer(t, network, ProxyProtocol{Send: v}, nil, poolOf(t, be))
				c := dialTCP(t, addr)
				payload := make([]byte, 1<<20)
				rand.Read(payload)
				got := ppRoundTrip(t, c, nil, payload)
				if sha256.Sum256(got) != sha256.Sum256(payload) {
					t.Fatalf("echo differs: got %d bytes, want %d", len(got), len(payload))
				}
				seen := be.next(t)
				if seen.err != nil {
					t.Fatalf("backend read no PROXY header: %v", seen.err)
				}
				checkHeader(t, seen.header, v, c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort())
			})
		}
	}
}

// A server listening on a wildcard address sends, as the header's destination, the address
// each client actually connected to.
func TestProxyProtocolSendFromWildcard(t *testing.T) { eachPlane(t, testProxyProtocolSendFromWildcard) }

func testProxyProtocolSendFromWildcard(t *testing.T) {
	for _, tc := range []struct{ network, listen, dial string }{
		{"tcp4", "0.0.0.0:0", "127.0.0.1"},
		{"tcp6", "[::]:0", "::1"},
	} {
		t.Run(tc.network, func(t *testing.T) {
			be := startPPBackend(t, tc.network, "")
			addr := startPPServerAt(t, tc.network, tc.listen, ProxyProtocol{Send: 2}, nil, poolOf(t, be))
			_, port, _ := net.SplitHostPort(addr)
			c := dialTCP(t, net.JoinHostPort(tc.dial, port))
			if got := ppRoundTrip(t, c, nil, []byte("ping")); string(got) != "ping" {
				t.Fatalf("echo %q, want ping", got)
			}
			seen := be.next(t)
			if seen.err != nil {
				t.Fatalf("backend read no PROXY header: %v", seen.err)
			}
			checkHeader(t, seen.header, 2, c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort())
		})
	}
}

func checkHeader(t *testing.T, h *proxyproto.Header, version byte, src, dst netip.AddrPort) {
	t.Helper()
	if h.Version != version || !h.Command.IsProxy() {
		t.Errorf("header version %d command %v, want v%d PROXY", h.Version, h.Command, version)
	}
	hs, hd, ok := h.TCPAddrs()
	if !ok {
		t.Fatalf("header has no TCP addresses: %+v", h)
	}
	if got := unmapped(hs.AddrPort()); got != unmapped(src) {
		t.Errorf("header source %v, want the client %v", got, src)
	}
	if got := unmapped(hd.AddrPort()); got != unmapped(dst) {
		t.Errorf("header destination %v, want the address the client connected to %v", got, dst)
	}
}

// inboundHeader is a PROXY header a balancer in front of fulcrum would send for client src.
func inboundHeader(t *testing.T, version byte, src, dst string) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(version,
		net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), net.TCPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAcceptProxyProtocolFromTrustedPeer(t *testing.T) {
	eachPlane(t, testAcceptProxyProtocolFromTrustedPeer)
}

func testAcceptProxyProtocolFromTrustedPeer(t *testing.T) {
	const client, dst = "203.0.113.7:4321", "192.0.2.1:443"
	for _, in := range []byte{1, 2} {
		for _, out := range []byte{1, 2} {
			t.Run("in v"+string('0'+in)+"/out v"+string('0'+out), func(t *testing.T) {
				be := startPPBackend(t, "tcp4", "")
				obs := &ppObserver{}
				picker := &recordingPicker{Pool: poolOf(t, be)}
				pp := ProxyProtocol{Send: out, Accept: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
				addr := startPPServer(t, "tcp4", pp, obs, picker)
				c := dialTCP(t, addr)
				// The header and the first client bytes arrive in one segment: the bytes the
				// header reader buffered past the header must still reach the backend.
				got := ppRoundTrip(t, c, inboundHeader(t, in, client, dst), []byte("payload after header"))
				if string(got) != "payload after header" {
					t.Fatalf("echo %q", got)
				}
				checkHeader(t, be.next(t).header, out, netip.MustParseAddrPort(client), netip.MustParseAddrPort(dst))
				resEventually(t, "connection closed", func() bool { _, n := obs.counts(); return n == 1 })
				info := obs.closed[0]
				if info.Client.String() != client || info.Peer != unmapped(c.LocalAddr().(*net.TCPAddr).AddrPort()) {
					t.Errorf("ConnInfo client %v peer %v, want %s and the real peer %v", info.Client, info.Peer, client, c.LocalAddr())
				}
				if up := obs.traffic[0].Up; up != int64(len("payload after header")) {
					t.Errorf("Traffic.Up = %d, want the client bytes after the header", up)
				}
				picker.mu.Lock()
				defer picker.mu.Unlock()
				if len(picker.clients) != 1 || picker.clients[0].String() != "203.0.113.7" {
					t.Errorf("picked for %v, want the header's client 203.0.113.7", picker.clients)
				}
			})
		}
	}
}

func TestAcceptProxyProtocolLocalKeepsRealAddress(t *testing.T) {
	eachPlane(t, testAcceptProxyProtocolLocalKeepsRealAddress)
}

func testAcceptProxyProtocolLocalKeepsRealAddress(t *testing.T) {
	be := startPPBackend(t, "tcp4", "")
	pp := ProxyProtocol{Send: 2, Accept: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	addr := startPPServer(t, "tcp4", pp, nil, poolOf(t, be))
	c := dialTCP(t, addr)
	local, err := (&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}).Format()
	if err != nil {
		t.Fatal(err)
	}
	if got := ppRoundTrip(t, c, local, []byte("hc")); string(got) != "hc" {
		t.Fatalf("echo %q", got)
	}
	checkHeader(t, be.next(t).header, 2, c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort())
}

// refused asserts the server closed c without a byte and without reaching the backend.
func refused(t *testing.T, c *net.TCPConn, be *ppBackend, obs *ppObserver, want error) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read %d bytes, err %v: want the connection closed", n, err)
	}
	resEventually(t, "rejection", func() bool { n, _ := obs.counts(); return n == 1 })
	if !errors.Is(obs.rejected[0], want) {
		t.Errorf("rejected with %v, want %v", obs.rejected[0], want)
	}
	select {
	case <-be.accepted:
		t.Error("the backend was dialed for a refused client")
	default:
	}
}

func TestAcceptProxyProtocolRefusesUntrustedHeader(t *testing.T) {
	eachPlane(t, testAcceptProxyProtocolRefusesUntrustedHeader)
}

func testAcceptProxyProtocolRefusesUntrustedHeader(t *testing.T) {
	for _, v := range []byte{1, 2} {
		t.Run("v"+string('0'+v), func(t *testing.T) {
			be := startPPBackend(t, "tcp4", "")
			obs := &ppObserver{}
			pp := ProxyProtocol{Send: 2, Accept: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
			addr := startPPServer(t, "tcp4", pp, obs, poolOf(t, be))
			c := dialTCP(t, addr)
			if _, err := c.Write(append(inboundHeader(t, v, "203.0.113.7:4321", "192.0.2.1:443"), "data"...)); err != nil {
				t.Fatal(err)
			}
			refused(t, c, be, obs, ErrProxyHeaderUntrusted)
		})
	}
}

func TestAcceptProxyProtocolPassesUntrustedPlainClient(t *testing.T) {
	eachPlane(t, testAcceptProxyProtocolPassesUntrustedPlainClient)
}

func testAcceptProxyProtocolPassesUntrustedPlainClient(t *testing.T) {
	be := startPPBackend(t, "tcp4", "")
	obs := &ppObserver{}
	pp := ProxyProtocol{Send: 1, Accept: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	addr := startPPServer(t, "tcp4", pp, obs, poolOf(t, be))
	c := dialTCP(t, addr)
	if got := ppRoundTrip(t, c, nil, []byte("plain client")); string(got) != "plain client" {
		t.Fatalf("echo %q", got)
	}
	checkHeader(t, be.next(t).header, 1, c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort())
}

// A server-first protocol from an untrusted peer sends nothing: after HeaderTimeout it is
// passed through as a plain client.
func TestAcceptProxyProtocolUntrustedServerFirst(t *testing.T) {
	eachPlane(t, testAcceptProxyProtocolUntrustedServerFirst)
}

func testAcceptProxyProtocolUntrustedServerFirst(t *testing.T) {
	be := startPPBackend(t, "tcp4", "220 hello\r\n")
	pp := ProxyProtocol{Accept: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, HeaderTimeout: 100 * time.Millisecond}
	addr := startPPServer(t, "tcp4", pp, nil, poolOf(t, be))
	c := dialTCP(t, addr)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "220 hello\r\n" {
		t.Fatalf("greeting %q, %v", line, err)
	}
}

func TestAcceptProxyProtocolRefusesTrustedPeerWithoutHeader(t *testing.T) {
	eachPlane(t, testAcceptProxyProtocolRefusesTrustedPeerWithoutHeader)
}

func testAcceptProxyProtocolRefusesTrustedPeerWithoutHeader(t *testing.T) {
	t.Run("client speaks first", func(t *testing.T) {
		be := startPPBackend(t, "tcp4", "")
		obs := &ppObserver{}
		pp := ProxyProtocol{Accept: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
		addr := startPPServer(t, "tcp4", pp, obs, poolOf(t, be))
		c := dialTCP(t, addr)
		c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		refused(t, c, be, obs, ErrProxyHeaderMissing)
	})
	t.Run("silent until the timeout", func(t *testing.T) {
		be := startPPBackend(t, "tcp4", "")
		obs := &ppObserver{}
		pp := ProxyProtocol{Accept: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, HeaderTimeout: 100 * time.Millisecond}
		addr := startPPServer(t, "tcp4", pp, obs, poolOf(t, be))
		refused(t, dialTCP(t, addr), be, obs, ErrProxyHeaderMissing)
	})
	t.Run("broken header", func(t *testing.T) {
		be := startPPBackend(t, "tcp4", "")
		obs := &ppObserver{}
		pp := ProxyProtocol{Accept: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
		addr := startPPServer(t, "tcp4", pp, obs, poolOf(t, be))
		c := dialTCP(t, addr)
		c.Write([]byte("PROXY TCP4 not-an-ip 192.0.2.1 1 2\r\n"))
		refused(t, c, be, obs, proxyproto.ErrInvalidAddress)
	})
}

func TestParseProxyVersion(t *testing.T) {
	for in, want := range map[string]byte{"": 0, "none": 0, "v1": 1, "1": 1, "v2": 2, "2": 2} {
		if got, err := ParseProxyVersion(in); err != nil || got != want {
			t.Errorf("ParseProxyVersion(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := ParseProxyVersion("v3"); err == nil {
		t.Error("v3 accepted")
	}
}

// After accepted, refused and timed-out PROXY connections and a Shutdown, no goroutine or
// socket is left over.
func TestProxyProtocolLeaksNothing(t *testing.T) { eachPlane(t, testProxyProtocolLeaksNothing) }

func testProxyProtocolLeaksNothing(t *testing.T) {
	// Sockets only: Go keeps a pool of splice pipes that the GC closes in its own time.
	fds := func() int {
		n := 0
		e, _ := os.ReadDir("/proc/self/fd")
		for _, f := range e {
			if l, _ := os.Readlink("/proc/self/fd/" + f.Name()); strings.HasPrefix(l, "socket:") {
				n++
			}
		}
		return n
	}
	be := startPPBackend(t, "tcp4", "")
	goroutines, files := runtime.NumGoroutine(), fds()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pp := ProxyProtocol{Send: 2, Accept: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, HeaderTimeout: 200 * time.Millisecond}
	s := &Server{Picker: poolOf(t, be), ProxyProtocol: pp, Logger: quiet, DataPlane: planeOf(t)}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	for i := 0; i < 10; i++ {
		c := dialTCP(t, ln.Addr().String())
		switch i % 3 {
		case 0: // trusted, with a header
			ppRoundTrip(t, c, inboundHeader(t, 1, "203.0.113.1:1", "192.0.2.1:2"), []byte("x"))
		case 1: // trusted, no header
			c.Write([]byte("no header"))
			io.ReadAll(c)
		case 2: // silent until the timeout
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			io.ReadAll(c)
		}
		c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	<-done
	for range 4 { // the backend's side of each proxied connection
		be.next(t)
	}
	resEventually(t, "goroutines and descriptors back to their baseline", func() bool {
		return runtime.NumGoroutine() <= goroutines && fds() <= files
	})
}
