package tlshello

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/testbed"
)

// TestPassthroughHandshake plays the data plane over real sockets: read a Go client's
// post-quantum hello, send the bytes read to a TLS backend first, then relay. The client's
// handshake must complete with the backend's certificate: the bytes went on unchanged.
func TestPassthroughHandshake(t *testing.T) {
	const name = "svc.b.test"
	self := testbed.SelfSigned(t, name)
	cert, pool := self.TLS, self.Roots
	backend, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })
	go serveEcho(backend)

	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { front.Close() })
	names := make(chan string, 1)
	done := make(chan struct{})
	go func() { defer close(done); passOne(front, backend.Addr().String(), names) }()
	t.Cleanup(func() { <-done }) // the client is closed by then: the relay ends

	c, err := tls.Dial("tcp", front.Addr().String(), &tls.Config{
		ServerName: name, RootCAs: pool, CurvePreferences: []tls.CurveID{tls.X25519MLKEM768},
	})
	if err != nil {
		t.Fatalf("handshake through the passthrough: %v", err)
	}
	defer c.Close()
	if got := <-names; got != name {
		t.Fatalf("read server name %q, want %q", got, name)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q, %v", buf, err)
	}
}

// serveEcho answers each TLS connection of ln with what it reads, until ln is closed.
func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() { defer c.Close(); io.Copy(c, c) }()
	}
}

// passOne accepts one client, reads its hello, sends it on to backend and relays both ways
// until either side ends.
func passOne(front net.Listener, backend string, names chan<- string) {
	client, err := front.Accept()
	if err != nil {
		names <- "accept: " + err.Error()
		return
	}
	defer client.Close()
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	var r Reader
	if st, err := r.Fill(client); st != Done {
		names <- "hello: " + st.String() + " " + r.Reason() + " " + errString(err)
		return
	}
	client.SetReadDeadline(time.Time{})
	names <- string(r.ServerName())
	up, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer up.Close()
	if _, err := up.Write(r.Bytes()); err != nil {
		return
	}
	go func() { io.Copy(up, client); up.Close() }()
	io.Copy(client, up)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
