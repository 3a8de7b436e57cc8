//go:build linux

package listener

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The many-connections test spreads its sockets over three processes, because one process may
// hold at most 20,000 descriptors and each proxied connection costs four: the proxy (this
// test) holds two per connection, a child process holds the clients and another the echo
// backends. manyConns is sized so the proxy fits: 9,000 connections are 18,000 descriptors.
// Under the race detector a process may run at most 8,128 goroutines, and the backend child
// runs one per connection, so the count is lower there.
func manyConns() int {
	if raceEnabled {
		return 7000
	}
	return 9000
}

// manyPayload is what each client sends and gets back: distinct bytes per connection.
const manyPayload = 4 << 10

// TestHelperManyChild is a child process of TestLoopsManyConnections; FULCRUM_MANY_ROLE says
// which: "backend" (echo server; prints ADDR, serves until stdin closes) or "clients" (opens
// FULCRUM_MANY_N connections to FULCRUM_MANY_ADDR, prints OPEN, waits for a line on stdin,
// then echoes a payload through each and prints DONE with the number that came back intact).
func TestHelperManyChild(t *testing.T) {
	switch os.Getenv("FULCRUM_MANY_ROLE") {
	case "backend":
		manyBackend(t)
	case "clients":
		manyClients(t)
	default:
		t.Skip("helper process of TestLoopsManyConnections")
	}
}

func manyBackend(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ADDR %s\n", ln.Addr())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c})
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	io.Copy(io.Discard, os.Stdin)
	ln.Close()
}

func manyClients(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("FULCRUM_MANY_N"))
	addr := os.Getenv("FULCRUM_MANY_ADDR")
	conns := make([]*net.TCPConn, n)
	const workers = 64
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				c, err := net.DialTimeout("tcp", addr, time.Minute)
				if err != nil {
					failed.Add(1)
					fmt.Fprintln(os.Stderr, "dial:", err)
					continue
				}
				conns[i] = c.(*net.TCPConn)
			}
		}()
	}
	wg.Wait()
	fmt.Printf("OPEN %d\n", n-int(failed.Load()))
	bufio.NewReader(os.Stdin).ReadString('\n')
	var intact atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if conns[i] != nil && echoIntact(conns[i], uint64(i)) {
					intact.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	fmt.Printf("DONE %d\n", intact.Load())
}

// echoIntact sends a payload seeded by seed, half-closes, and checks the SHA-256 of what comes
// back against the payload's.
func echoIntact(c *net.TCPConn, seed uint64) bool {
	defer c.Close()
	payload := make([]byte, manyPayload)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := 0; i < len(payload); i += 8 {
		binary.LittleEndian.PutUint64(payload[i:], r.Uint64())
	}
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := c.Write(payload); err != nil {
		return false
	}
	c.CloseWrite()
	h := sha256.New()
	if _, err := io.Copy(h, struct{ io.Reader }{c}); err != nil {
		return false
	}
	want := sha256.Sum256(payload)
	return bytes.Equal(h.Sum(nil), want[:])
}

// raiseFileLimit lifts the soft descriptor limit to the hard one; it returns the limit.
func raiseFileLimit(t *testing.T) int {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < lim.Max {
		old := lim.Cur
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lim.Cur = old; syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) })
	}
	return int(lim.Max)
}

// TestLoopsManyConnections holds thousands of connections at once across two loops, then
// echoes a distinct payload through each, checked by SHA-256; afterwards every count is 0.
func TestLoopsManyConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("thousands of connections over three processes")
	}
	n := manyConns()
	if limit := raiseFileLimit(t); 2*n+200 > limit {
		n = (limit - 200) / 2
		t.Logf("descriptor limit %d: %d connections", limit, n)
	}
	backend := startChild(t, "TestHelperManyChild", "FULCRUM_MANY_ROLE=backend")
	p := resPool(t, backend.line(t, "ADDR "))
	e, addr := startLoops(t, 2, &Server{Picker: p})
	clients := startChild(t, "TestHelperManyChild", "FULCRUM_MANY_ROLE=clients", "FULCRUM_MANY_N="+strconv.Itoa(n), "FULCRUM_MANY_ADDR="+addr)
	if open := clients.line(t, "OPEN "); open != strconv.Itoa(n) {
		t.Fatalf("%s of %d clients connected", open, n)
	}
	resEventually(t, "every connection held at once, and counted on the backend", func() bool {
		return e.ActiveConns() == n && resStatus(t, p, p.Snapshot()[0].Key).Active == int64(n)
	})
	fmt.Fprintln(clients.in, "go")
	if done := clients.line(t, "DONE "); done != strconv.Itoa(n) {
		t.Fatalf("%s of %d echoes intact", done, n)
	}
	resEventually(t, "every connection ended", func() bool { return e.ActiveConns() == 0 })
	if st := resStatus(t, p, p.Snapshot()[0].Key); st.Active != 0 || st.Total != uint64(n) {
		t.Fatalf("after the run: %d active, %d total, want 0 and %d", st.Active, st.Total, n)
	}
}
