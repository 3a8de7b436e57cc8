package main

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// --balance roundrobin splits 30 sequential connections to backends of weights 1 and 2 exactly
// 10 and 20, counted by the backends themselves and by status total_conns.
func TestBalanceRoundRobinExactSplit(t *testing.T) {
	light, heavy := startBackend(t, echoHandler), startBackend(t, echoHandler)
	b := startBalancer(t, "--balance", "roundrobin")
	for _, reg := range []struct {
		be     *backend
		weight int
	}{{light, 1}, {heavy, 2}} {
		q := "/upstream/add?host=127.0.0.1&port=" + strconv.Itoa(reg.be.port()) + "&weight=" + strconv.Itoa(reg.weight)
		if body, code, err := adminGet(b.admn, q); err != nil || code != http.StatusOK {
			t.Fatalf("add %s: %d %v %s", reg.be.addr(), code, err, body)
		}
	}
	for i := range 30 {
		rrRoundTrip(t, b.listen, i)
	}
	eventually(t, 10*time.Second, "both backends served their connections", func() bool {
		return light.served.Load()+heavy.served.Load() == 30
	})
	if l, h := light.accepted.Load(), heavy.accepted.Load(); l != 10 || h != 20 {
		t.Errorf("backends accepted %d (weight 1) and %d (weight 2), want 10 and 20", l, h)
	}
	st := status(t, b.admn)
	if l, h := st[light.addr()].TotalConns, st[heavy.addr()].TotalConns; l != 10 || h != 20 {
		t.Errorf("status total_conns %d and %d, want 10 and 20", l, h)
	}
}

// rrRoundTrip sends one byte through the balancer, reads its echo and closes: one whole
// connection before the next starts.
func rrRoundTrip(t *testing.T, addr string, i int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("connection %d: %v", i, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{byte(i)}); err != nil {
		t.Fatalf("connection %d: write: %v", i, err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != byte(i) {
		t.Fatalf("connection %d: echo %v, %v", i, b, err)
	}
}
