package listener_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/testbed"
	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/listener/sniroute"
	"github.com/fulcrumlb/fulcrum/pool"
)

// tlsBackend answers a TLS handshake with cert and then writes its name and a newline.
func tlsBackend(t *testing.T, name string, cert tls.Certificate) *backend {
	return startBackend(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		if s.Handshake() == nil {
			s.Write([]byte(name + "\n"))
			s.Close()
		}
	})
}

// firstBytes records the first bytes each connection sends (up to 16) and answers "default".
type firstBytes struct {
	mu   sync.Mutex
	seen [][]byte
}

func (f *firstBytes) handle(c *net.TCPConn) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 16)
	n, _ := c.Read(buf)
	f.mu.Lock()
	f.seen = append(f.seen, buf[:n])
	f.mu.Unlock()
	c.Write([]byte("default\n"))
	c.CloseWrite()
	io.Copy(io.Discard, c) // unread bytes at close would reset the client
}

func (f *firstBytes) last() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) == 0 {
		return nil
	}
	return f.seen[len(f.seen)-1]
}

// sniCounts records an SNIRouter's decisions.
type sniCounts struct {
	mu      sync.Mutex
	routed  map[string]int
	refused map[string]int
}

func (s *sniCounts) SNIRouted(listen, service string, byDefault bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if byDefault {
		service = "(default)"
	}
	s.routed[service]++
}

func (s *sniCounts) SNIRefused(listen, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refused[reason]++
}

func (s *sniCounts) get(m *map[string]int, k string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return (*m)[k]
}

// sniRig is an SNIRouter on a loopback port in front of services a (a.test), b (*.b.test)
// and, with a default, d; each a Server on the subtest's plane.
type sniRig struct {
	addr     string
	router   *listener.SNIRouter
	servers  []*listener.Server
	pools    []*pool.Pool
	obs      *sniCounts
	rootsA   *x509.CertPool
	rootsB   *x509.CertPool
	def      *firstBytes
	backends map[string]*backend
	traffic  *upBytes
}

// upBytes records, per service, the client → backend bytes of each closed connection and
// what its meter heard.
type upBytes struct {
	mu    sync.Mutex
	up    map[string][]int64
	sni   map[string][]string
	meter map[string]int64
	last  string
}

func (u *upBytes) Rejected(netip.AddrPort, error)  {}
func (u *upBytes) DialFailed(*pool.Backend, error) {}
func (u *upBytes) Opened(c *listener.ConnInfo) listener.Meter {
	return upMeter{u, c.Service}
}
func (u *upBytes) Closed(c *listener.ConnInfo, t listener.Traffic) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.up[c.Service] = append(u.up[c.Service], t.Up)
	u.sni[c.Service] = append(u.sni[c.Service], c.SNI)
	u.last = c.Client.String()
}

// client is the client of the last closed connection.
func (u *upBytes) lastClient() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

func (u *upBytes) closed(service string) ([]int64, []string, int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.up[service]), slices.Clone(u.sni[service]), u.meter[service]
}

type upMeter struct {
	u       *upBytes
	service string
}

func (m upMeter) Moved(up bool, n int64) {
	if up {
		m.u.mu.Lock()
		m.u.meter[m.service] += n
		m.u.mu.Unlock()
	}
}
func (m upMeter) Flush() {}

func startSNIRig(t *testing.T, withDefault bool, opts ...func(*listener.SNIRouter)) *sniRig {
	t.Helper()
	selfA, selfB := testbed.SelfSigned(t, "a.test"), testbed.SelfSigned(t, "*.b.test")
	certA, rootsA, certB, rootsB := selfA.TLS, selfA.Roots, selfB.TLS, selfB.Roots
	rig := &sniRig{obs: &sniCounts{routed: map[string]int{}, refused: map[string]int{}}, rootsA: rootsA, rootsB: rootsB,
		def: &firstBytes{}, backends: map[string]*backend{},
		traffic: &upBytes{up: map[string][]int64{}, sni: map[string][]string{}, meter: map[string]int64{}}}
	rig.backends["a"] = tlsBackend(t, "a", certA)
	rig.backends["b"] = tlsBackend(t, "b", certB)
	names := []string{"a", "b"}
	if withDefault {
		rig.backends["d"] = startBackend(t, rig.def.handle)
		names = append(names, "d")
	}
	patterns := map[string]string{"a": "a.test", "b": "*.b.test"}
	var services []sniroute.Service[*listener.Server]
	for _, name := range names {
		p := &pool.Pool{Logger: quiet}
		if _, err := p.Register(rig.backends[name].addr(), 0); err != nil {
			t.Fatal(err)
		}
		srv := &listener.Server{Picker: p, Service: name, Logger: quiet, DataPlane: planeOf(t), ConnectTimeout: 2 * time.Second, Observer: rig.traffic}
		rig.servers, rig.pools = append(rig.servers, srv), append(rig.pools, p)
		svc := sniroute.Service[*listener.Server]{Name: name, Value: srv}
		if pat, ok := patterns[name]; ok {
			pp, err := sniroute.ParsePattern(pat)
			if err != nil {
				t.Fatal(err)
			}
			svc.Patterns = []sniroute.Pattern{pp}
		}
		services = append(services, svc)
	}
	table, err := sniroute.Build("test", services)
	if err != nil {
		t.Fatal(err)
	}
	if err := listener.CheckSNIServers(nil, rig.servers...); err != nil {
		t.Fatal(err)
	}
	rig.router = &listener.SNIRouter{Listen: "test", Routes: table, HelloTimeout: 300 * time.Millisecond, Observer: rig.obs, Logger: quiet}
	for _, o := range opts {
		o(rig.router)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rig.addr = ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- rig.router.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rig.router.Shutdown(ctx)
		if err := <-done; !errors.Is(err, listener.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		rig.assertIdle(t)
		for _, s := range rig.servers {
			s.Shutdown(ctx)
		}
	})
	return rig
}

// assertIdle waits for every count (router, servers, backends' counts) to be back at 0.
func (rig *sniRig) assertIdle(t *testing.T) {
	t.Helper()
	eventually(t, "every count back to 0", func() bool {
		n := rig.router.ActiveConns()
		for i, s := range rig.servers {
			n += s.ActiveConns()
			for _, b := range rig.pools[i].Snapshot() {
				n += int(b.Active)
			}
		}
		return n == 0
	})
}

func (rig *sniRig) dial(t *testing.T) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", rig.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// tlsLine handshakes with name and the roots, and returns the backend's line and the
// certificate's subject.
func (rig *sniRig) tlsLine(t *testing.T, name string, roots *x509.CertPool) (string, string) {
	t.Helper()
	c := tls.Client(rig.dial(t), &tls.Config{ServerName: name, RootCAs: roots})
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		t.Fatalf("handshake for %s: %v", name, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading from %s: %v", name, err)
	}
	return line, c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// helloOf is the ClientHello a Go client sends for name, captured without sending it anywhere.
func helloOf(t testing.TB, name string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	go tls.Client(a, &tls.Config{ServerName: name}).Handshake()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := readFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := readFull(b, body); err != nil {
		t.Fatal(err)
	}
	b.Close()
	return append(hdr, body...)
}

func readFull(c net.Conn, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := c.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// closedWithin reports whether the proxy closes c (a read ends in EOF or a reset) within d.
func closedWithin(c *net.TCPConn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 512)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}
