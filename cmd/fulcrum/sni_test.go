package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/testbed"
)

func TestSNIFlagsAndConfigFile(t *testing.T) {
	path := writeConfig(t, `
listen: 127.0.0.1:7443
services:
  - name: api
    listen: 127.0.0.1:7443
    sni: [api.example.com, "*.API.example.com."]
  - name: web
    listen: 127.0.0.1:7443
    sni: www.example.com
`)
	cfg, err := parseServeArgs(t, "--config", path, "--sni", "web=web.example.com", "--client-hello-timeout", "2s")
	if err != nil {
		t.Fatal(err)
	}
	api, web := serviceNamed(cfg, "api"), serviceNamed(cfg, "web")
	if len(api.sni) != 2 || api.sni[1].String() != "*.api.example.com" || len(web.sni) != 2 || web.sni[1].String() != "web.example.com" {
		t.Errorf("patterns: api %v, web %v", api.sni, web.sni)
	}
	if cfg.clientHelloTimeout != 2*time.Second {
		t.Errorf("--client-hello-timeout %v", cfg.clientHelloTimeout)
	}
	def, err := parseServeArgs(t)
	if err != nil || def.clientHelloTimeout != 5*time.Second {
		t.Errorf("default --client-hello-timeout %v, %v; want 5s", def.clientHelloTimeout, err)
	}
}

// TestSNIStartErrors: a bad pattern, one pattern claimed twice on an address, and two
// defaults on an address each stop the start with one clear line and a non-zero exit.
func TestSNIStartErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--service", "a=127.0.0.1:1", "--sni", "a=bad_name!"}, "--sni"},
		{[]string{"--service", "a=127.0.0.1:1", "--sni", "a"}, "NAME=PATTERN"},
		{[]string{"--sni", "nosuch=a.test"}, `no service named "nosuch"`},
		{[]string{"--service", "a=127.0.0.1:1", "--service", "b=127.0.0.1:1", "--sni", "a=x.test", "--sni", "b=X.test"}, "x.test"},
		{[]string{"--service", "a=127.0.0.1:1", "--service", "b=127.0.0.1:1"}, "default"},
	} {
		cfg, err := parseServeArgs(t, tc.args...)
		if err == nil {
			err = errors.Join(checkSNI(cfg.services)...)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
	path := writeConfig(t, "services:\n  - name: a\n    listen: 127.0.0.1:1\n    sni: [\"*.*.test\"]\n")
	if _, err := parseServeArgs(t, "--config", path); err == nil || !strings.Contains(err.Error(), "sni") {
		t.Errorf("bad pattern in the file: %v", err)
	}
	shared := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	code, out := runFulcrumOut(t, "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--service", "a="+shared, "--service", "b="+shared)
	if code == 0 || !strings.Contains(out, "default") || strings.Count(strings.TrimSpace(out), "\n") > 1 {
		t.Errorf("two defaults: exit %d, output %q", code, out)
	}
}

// TestSNIServe: a process with services a (a.test), b (*.b.test) and the default on one
// address routes crypto/tls clients by name, to backends with their own certificates;
// openssl s_client too, where installed.
func TestSNIServe(t *testing.T) { eachPlane(t, testSNIServe) }

func testSNIServe(t *testing.T) {
	selfA, selfB := testbed.SelfSigned(t, "a.test"), testbed.SelfSigned(t, "*.b.test")
	certA, rootsA, pemA := selfA.TLS, selfA.Roots, selfA.PEMFile(t)
	certB, rootsB := selfB.TLS, selfB.Roots
	ba, bb := tlsNameBackend(t, "a", certA), tlsNameBackend(t, "b", certB)
	bd := startBackend(t, func(c net.Conn) error { // reads all it is sent: unread bytes at close reset the client
		c.Write([]byte("default\n"))
		c.(*net.TCPConn).CloseWrite()
		_, err := io.Copy(io.Discard, c)
		return err
	})
	addr := net.JoinHostPort("127.0.0.1", itoa(freePort(t)))
	accessLog := filepath.Join(t.TempDir(), "access.log")
	b := startBalancer(t, "--listen", addr, "--backend", bd.Addr(), "--access-log", accessLog,
		"--service", "a="+addr, "--service", "b="+addr, "--backend", "a="+ba.Addr(), "--backend", "b="+bb.Addr(),
		"--sni", "a=a.test", "--sni", "b=*.b.test", "--client-hello-timeout", "300ms")
	for _, tc := range []struct {
		name, want string
		roots      *x509.CertPool
	}{{"a.test", "a\n", rootsA}, {"z.b.test", "b\n", rootsB}} {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", b.listen, &tls.Config{ServerName: tc.name, RootCAs: tc.roots})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if line != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, line, err, tc.want)
		}
	}
	c, err := net.DialTimeout("tcp", b.listen, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	if line, err := bufio.NewReader(c).ReadString('\n'); line != "default\n" {
		t.Errorf("plain HTTP: got %q, %v; want the default", line, err)
	}
	c.Close()
	slow, err := net.DialTimeout("tcp", b.listen, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	slow.Write([]byte{0x16, 0x03})
	slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := slow.Read(make([]byte, 1)); err == nil {
		t.Error("a client sending 2 bytes of a hello was not closed")
	}
	slow.Close()
	checkSNISeenFromOutside(t, b, accessLog)
	opensslSNI(t, b.listen, pemA)
	curlSNI(t, b.listen, pemA)
}

// checkSNISeenFromOutside: status lists each service's patterns, the metrics count the
// routing, and the access log names the server name of each connection.
func checkSNISeenFromOutside(t *testing.T, b *balancer, accessLog string) {
	t.Helper()
	body, _, err := adminGet(b.admn, "/upstream/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Services []struct {
			Name string   `json:"name"`
			SNI  []string `json:"sni"`
		} `json:"services"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range st.Services {
		if s.SNI == nil {
			t.Errorf("service %s: sni is null, want a list", s.Name)
		}
		got[s.Name] = strings.Join(s.SNI, ",")
	}
	if got["a"] != "a.test" || got["b"] != "*.b.test" || got["default"] != "" {
		t.Errorf("status sni %v", got)
	}
	eventually(t, 10*time.Second, "SNI metrics", func() bool {
		m, _, _ := adminGet(b.admn, "/metrics")
		text := string(m)
		return strings.Contains(text, `fulcrum_sni_routed_total{service="a"} 1`) &&
			strings.Contains(text, `fulcrum_sni_routed_total{service="b"} 1`) &&
			strings.Contains(text, `fulcrum_sni_default_total{listen="`+b.listen+`"} 1`) &&
			strings.Contains(text, `fulcrum_sni_refused_total{listen="`+b.listen+`",reason="timeout"} 1`) &&
			strings.Contains(text, `fulcrum_sni_refused_total{listen="`+b.listen+`",reason="no_default"} 0`)
	})
	eventually(t, 10*time.Second, "access log lines with sni", func() bool {
		data, _ := os.ReadFile(accessLog)
		return strings.Contains(string(data), `"sni":"a.test"`) && strings.Contains(string(data), `"sni":"z.b.test"`) &&
			strings.Contains(string(data), `"sni":""`)
	})
}

// opensslSNI checks that openssl s_client -servername a.test sees a.test's certificate.
func opensslSNI(t *testing.T, addr, caFile string) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Log("openssl not installed: skipping its s_client check")
		return
	}
	cmd := exec.Command(bin, "s_client", "-connect", addr, "-servername", "a.test", "-CAfile", caFile, "-verify_return_error")
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "CN") || !strings.Contains(string(out), "a.test") {
		t.Errorf("openssl s_client -servername a.test: %v\n%s", err, out)
	}
}

// tlsNameBackend completes a TLS handshake with cert, then writes name and a newline.
func tlsNameBackend(t *testing.T, name string, cert tls.Certificate) *backend {
	return startBackend(t, func(c net.Conn) error {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		if err := s.Handshake(); err != nil {
			return nil // a client that only looked (s_client) may go away
		}
		s.Write([]byte(name + "\n"))
		s.CloseWrite()         // close_notify: the client knows the reply is whole
		io.Copy(io.Discard, s) // what the client sent (curl's request): unread bytes would reset it
		return nil
	})
}

// curlSNI checks that curl --resolve a.test:PORT:127.0.0.1 reaches a's backend through its
// certificate.
func curlSNI(t *testing.T, addr, caFile string) {
	bin, err := exec.LookPath("curl")
	if err != nil {
		t.Log("curl not installed: skipping its --resolve check")
		return
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "-sS", "--max-time", "10", "--http0.9", "--cacert", caFile,
		"--resolve", "a.test:"+port+":127.0.0.1", "https://a.test:"+port+"/")
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "a\n" {
		t.Errorf("curl --resolve a.test: %v: %q", err, out)
	}
}
