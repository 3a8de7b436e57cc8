package tlshello

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestInstalledClients reads the hellos of the openssl and curl installed here, live over
// loopback (the seeds are fixed captures; this follows the installed versions). A client not
// installed is skipped.
func TestInstalledClients(t *testing.T) {
	cases := []struct {
		tool string
		args func(port string) []string
		want string
	}{
		{"openssl", func(port string) []string {
			return []string{"s_client", "-connect", "127.0.0.1:" + port, "-servername", "api.example.com"}
		}, "api.example.com"},
		{"curl", func(port string) []string {
			return []string{"-sk", "--max-time", "10", "--resolve", "a.test:" + port + ":127.0.0.1", "https://a.test:" + port + "/"}
		}, "a.test"},
	}
	for _, c := range cases {
		t.Run(c.tool, func(t *testing.T) {
			path, err := exec.LookPath(c.tool)
			if err != nil {
				t.Skipf("%s is not installed", c.tool)
			}
			if got := helloOf(t, path, c.args); got != c.want {
				t.Errorf("server name %q, want %q", got, c.want)
			}
		})
	}
}

// helloOf runs the client at path against a loopback listener and returns the server name
// its hello asked for.
func helloOf(t *testing.T, path string, args func(port string) []string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args(port)...)
	cmd.Stdin = strings.NewReader("") // openssl s_client ends at end of input
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait() // the client ends once its connection is closed, or at ctx's end
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(20 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	var r Reader
	if st, err := r.Fill(c); st != Done {
		t.Fatalf("status %v (%q), err %v", st, r.Reason(), err)
	}
	return string(r.ServerName())
}
