package main

// Helpers of the fault suite: the real fulcrum binary (built once in TestMain) in its own
// process, backends in the test process or in a child process (the test binary run again with
// FULCRUM_FAULT_ROLE=backends), and the "xfer" protocol whose every byte is checked by SHA-256.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fulcrumlb/fulcrum/internal/testbed"
)

var (
	fulcrumBin string // the binary under test; empty when it could not be built
	buildErr   error
	// testUpgrades is the process's one grant of SIGHUP upgrades, shared by every in-process
	// serve as main's is by the one serve of a real process.
	testUpgrades = &upgrades{}
)

func TestMain(m *testing.M) {
	if os.Getenv("FULCRUM_FAULT_ROLE") == "backends" {
		runBackendsChild()
		return
	}
	dir, err := os.MkdirTemp("", "fulcrum-fault-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fault tests: temp dir:", err)
		os.Exit(1)
	}
	fulcrumBin = filepath.Join(dir, "fulcrum")
	// Built without -race on purpose: the race detector caps a process at 8128 goroutines,
	// and the balancer runs two per proxied connection.
	out, err := exec.Command("go", "build", "-o", fulcrumBin, ".").CombinedOutput()
	if err != nil {
		buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		fulcrumBin = ""
	}
	code := runWithLeakCheck(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// runWithLeakCheck runs the tests and then fails if any goroutine of the test process is left.
func runWithLeakCheck(m *testing.M) int {
	code := m.Run()
	if code != 0 {
		return code
	}
	if err := goleak.Find(); err != nil {
		fmt.Fprintln(os.Stderr, "goleak: goroutines left after the tests:", err)
		return 1
	}
	return 0
}

func needBinary(t *testing.T) {
	t.Helper()
	if fulcrumBin == "" {
		t.Skipf("fault tests skipped: cannot build the fulcrum binary: %v", buildErr)
	}
}

// eventually polls cond every 10 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testbed.Eventually(t, d, what, cond)
}

// ---- the xfer protocol ----
//
// The client sends a 16-byte header (upload length, download length, download offset, zero),
// then the upload, then FIN. The backend answers with the SHA-256 of what it received, then
// the download, then FIN. Uploads and downloads are windows of one pseudo-random block, so
// every connection carries its own bytes without generating them.

const (
	blockSize = 1 << 20
	maxStream = 256 << 10
)

// block is the same on every process: a fixed seed.
var block = func() []byte {
	b := make([]byte, blockSize+maxStream)
	r := rand.NewChaCha8([32]byte{'f', 'u', 'l', 'c', 'r', 'u', 'm'})
	r.Read(b[:blockSize])
	copy(b[blockSize:], b[:maxStream])
	return b
}()

func stream(off uint32, n int) []byte { return block[off%blockSize:][:n] }

// serveXfer is the backend side of one connection.
func serveXfer(c net.Conn) error {
	defer c.Close()
	var hdr [16]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return fmt.Errorf("xfer header: %w", err)
	}
	up, down := int64(binary.BigEndian.Uint32(hdr[0:])), int(binary.BigEndian.Uint32(hdr[4:]))
	off := binary.BigEndian.Uint32(hdr[8:])
	if down > maxStream {
		return errors.New("xfer: download too long")
	}
	h := sha256.New()
	if n, err := io.Copy(h, io.LimitReader(c, up)); err != nil || n != up {
		return fmt.Errorf("xfer upload: %d of %d bytes: %v", n, up, err)
	}
	if _, err := c.Write(h.Sum(nil)); err != nil {
		return fmt.Errorf("xfer reply: %w", err)
	}
	if _, err := c.Write(stream(off, down)); err != nil {
		return fmt.Errorf("xfer download: %w", err)
	}
	return nil
}

// xferClient is the client side of one connection, in steps so tests can hold it midway.
type xferClient struct {
	c        *net.TCPConn
	up, down []byte
	sent     int
}

// dialXfer connects and sends the header; up and down are the lengths to move.
func dialXfer(addr string, up, down int) (*xferClient, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	x := &xferClient{c: c.(*net.TCPConn), up: stream(rand.Uint32(), up), down: stream(rand.Uint32(), down)}
	var hdr [16]byte
	binary.BigEndian.PutUint32(hdr[0:], uint32(up))
	binary.BigEndian.PutUint32(hdr[4:], uint32(down))
	binary.BigEndian.PutUint32(hdr[8:], offsetOf(x.down))
	if _, err := x.c.Write(hdr[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("xfer header: %w", err)
	}
	return x, nil
}

// offsetOf is the block offset a stream slice starts at.
func offsetOf(s []byte) uint32 {
	return uint32(cap(block) - cap(s))
}

// send writes up to n more bytes of the upload.
func (x *xferClient) send(n int) error {
	n = min(n, len(x.up)-x.sent)
	if _, err := x.c.Write(x.up[x.sent : x.sent+n]); err != nil {
		return fmt.Errorf("xfer upload: %w", err)
	}
	x.sent += n
	return nil
}

// finish sends the rest, reads the reply and checks both hashes; it always closes.
func (x *xferClient) finish() error {
	defer x.c.Close()
	x.c.SetDeadline(time.Now().Add(60 * time.Second))
	if err := x.send(len(x.up)); err != nil {
		return err
	}
	if err := x.c.CloseWrite(); err != nil {
		return fmt.Errorf("xfer close write: %w", err)
	}
	var got [sha256.Size]byte
	if _, err := io.ReadFull(x.c, got[:]); err != nil {
		return fmt.Errorf("xfer reply: %w", err)
	}
	if got != sha256.Sum256(x.up) {
		return errors.New("xfer: the backend received other bytes than were sent (SHA-256 differs)")
	}
	h := sha256.New()
	n, err := io.Copy(h, x.c)
	if err != nil {
		return fmt.Errorf("xfer download after %d bytes: %w", n, err)
	}
	want := sha256.Sum256(x.down)
	if n != int64(len(x.down)) || !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("xfer download: %d bytes of %d, SHA-256 match %v", n, len(x.down), bytes.Equal(h.Sum(nil), want[:]))
	}
	return nil
}

func (x *xferClient) close() { x.c.Close() }

// xferRoundTrip is one whole connection.
func xferRoundTrip(addr string, up, down int) error {
	x, err := dialXfer(addr, up, down)
	if err != nil {
		return err
	}
	return x.finish()
}

// ---- in-process backends ----

// backend is the one loopback test backend of this package: a listener in the test process
// whose handler serves each connection (and closes it). Stop, at the test's end, closes what
// is still open and waits for every handler.
type backend = testbed.Backend

// startBackend serves handle on a new 127.0.0.1 port until the test ends.
func startBackend(t *testing.T, handle func(net.Conn) error) *backend {
	t.Helper()
	return testbed.Serve(t, handle)
}

// startBackendOn serves handle on ln until the test ends.
func startBackendOn(t *testing.T, ln net.Listener, handle func(net.Conn) error) *backend {
	return testbed.ServeOn(t, ln, handle)
}

// echoHandler echoes until the client's FIN, then closes.
func echoHandler(c net.Conn) error {
	defer c.Close()
	_, err := io.Copy(c, c)
	return err
}

// resetHandler accepts and resets at once.
func resetHandler(c net.Conn) error {
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	return errors.New("reset")
}

// ---- backends in a child process ----

// runBackendsChild is the child process: it serves xfer on FULCRUM_FAULT_BACKENDS listeners,
// prints "ADDR host:port" for each, and exits when its stdin closes.
func runBackendsChild() {
	n, _ := strconv.Atoi(os.Getenv("FULCRUM_FAULT_BACKENDS"))
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("ADDR %s\n", ln.Addr())
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go serveXfer(c)
			}
		}()
	}
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// childBackends is a running backends child process.
type childBackends struct {
	*testbed.Child
	addrs []string
}

func startChildBackends(t *testing.T, n int) *childBackends {
	t.Helper()
	ch := testbed.StartChild(t, []string{"FULCRUM_FAULT_ROLE=backends", "FULCRUM_FAULT_BACKENDS=" + strconv.Itoa(n)}, "-test.run=^$")
	cb := &childBackends{Child: ch}
	for len(cb.addrs) < n {
		cb.addrs = append(cb.addrs, ch.Line(t, "ADDR "))
	}
	return cb
}

// ---- the balancer process ----

type balancer struct {
	cmd          *exec.Cmd
	listen, admn string
	logPath      string
	done         chan struct{}
	err          error // Wait's result, once done is closed
}

// startBalancer runs fulcrum serve on loopback ports with args added.
func startBalancer(t *testing.T, args ...string) *balancer {
	t.Helper()
	return startBalancerVia(t, nil, args...)
}

// startBalancerVia runs the binary through a wrapper command (such as sh -c with ulimit); the
// wrapper must exec the binary given as its last arguments.
func startBalancerVia(t *testing.T, wrapper []string, args ...string) *balancer {
	t.Helper()
	needBinary(t)
	return startBalancerBin(t, fulcrumBin, wrapper, args...)
}

// startBalancerBin runs the binary at bin (a copy, for tests that replace it).
func startBalancerBin(t *testing.T, bin string, wrapper []string, args ...string) *balancer {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "fulcrum.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	argv := append([]string{bin, "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--log-format", "json", "--sweep-interval", "200ms"}, serveTestArgs(t, args)...)
	argv = append(argv, args...)
	argv = append(wrapper, argv...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = logf // a file, not a pipe: upgraded successors inherit it
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &balancer{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { b.err = cmd.Wait(); close(b.done) }()
	t.Cleanup(func() {
		b.stop(t)
		if t.Failed() {
			t.Logf("balancer log (last 4 KiB):\n%s", tail(b.log(), 4096))
		}
	})
	eventually(t, 20*time.Second, "balancer logs its addresses", func() bool {
		b.listen, b.admn = b.addresses()
		return b.listen != "" || b.exited()
	})
	if b.listen == "" {
		t.Fatalf("balancer exited before serving: %v\n%s", b.err, b.log())
	}
	return b
}

func (b *balancer) pid() int { return b.cmd.Process.Pid }

func (b *balancer) exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

func (b *balancer) log() string {
	data, _ := os.ReadFile(b.logPath)
	return string(data)
}

// addresses reads the first "fulcrum serving" log line.
func (b *balancer) addresses() (listen, admin string) {
	for _, line := range strings.Split(b.log(), "\n") {
		var rec struct{ Msg, Listen, Admin string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "fulcrum serving" {
			return rec.Listen, rec.Admin
		}
	}
	return "", ""
}

// stop ends the balancer (SIGTERM, then SIGKILL) if it still runs.
func (b *balancer) stop(t *testing.T) {
	if b.exited() {
		return
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		b.cmd.Process.Kill()
		<-b.done
		t.Errorf("balancer did not stop on SIGTERM within 30s")
	}
}

// ---- the admin API ----

type serverStatus struct {
	Host       string `json:"host"`
	Port       int    `json:"port"`
	ConnCount  int64  `json:"conn_count"`
	TotalConns uint64 `json:"total_conns"`
	State      string `json:"state"`
}

func (s serverStatus) key() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// adminGet calls the admin API without keeping connections (no idle goroutines to leak).
func adminGet(admin, pathQuery string) ([]byte, int, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := cl.Get("http://" + admin + pathQuery)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return body, resp.StatusCode, err
}

// status returns the balancer's backends by key.
func status(t *testing.T, admin string) map[string]serverStatus {
	t.Helper()
	body, code, err := adminGet(admin, "/upstream/status")
	if err != nil || code != http.StatusOK {
		t.Fatalf("status: %d %v %s", code, err, body)
	}
	var reply struct{ Servers []serverStatus }
	if err := json.Unmarshal(body, &reply); err != nil {
		t.Fatalf("status: %v: %s", err, body)
	}
	out := make(map[string]serverStatus, len(reply.Servers))
	for _, s := range reply.Servers {
		out[s.key()] = s
	}
	return out
}

func addBackend(t *testing.T, admin, addr string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	body, code, err := adminGet(admin, "/upstream/add?host="+host+"&port="+port)
	if err != nil || code != http.StatusOK {
		t.Fatalf("add %s: %d %v %s", addr, code, err, body)
	}
}

// activeConns is the sum of conn_count over every backend.
func activeConns(t *testing.T, admin string) int64 {
	var n int64
	for _, s := range status(t, admin) {
		n += s.ConnCount
	}
	return n
}

// ---- process figures ----

// fdCount is how many descriptors pid has open.
func fdCount(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// socketCount is how many sockets pid has open: its listeners and its connections. (Not every
// descriptor: Go keeps a cache of splice pipes that outlives connections by design.)
func socketCount(pid int) int {
	inodes := socketInodes(pid)
	if inodes == nil {
		return -1
	}
	return len(inodes)
}

// connSockets is how many sockets pid has open that are not listening: its connections, and
// any socket that never connected. A listener may be open more than once (the event loops
// and an upgrade keep copies of it, made when they start); its inode's LISTEN state in
// /proc/PID/net/tcp{,6} tells every copy apart from a connection.
func connSockets(pid int) int {
	inodes := socketInodes(pid)
	if inodes == nil {
		return -1
	}
	listening := listeningInodes(pid)
	n := 0
	for _, ino := range inodes {
		if !listening[ino] {
			n++
		}
	}
	return n
}

// socketInodes lists the inode of each socket descriptor pid has open; nil if pid is gone.
func socketInodes(pid int) []string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	inodes := []string{}
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if ino, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			inodes = append(inodes, strings.TrimSuffix(ino, "]"))
		}
	}
	return inodes
}

// listeningInodes is the set of TCP sockets in LISTEN state (0A) seen from pid's network
// namespace, by inode.
func listeningInodes(pid int) map[string]bool {
	set := map[string]bool{}
	for _, table := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(data)) {
			// sl local remote st tx:rx tr:when retrnsmt uid timeout inode ...
			if f := strings.Fields(line); len(f) > 9 && f[3] == "0A" {
				set[f[9]] = true
			}
		}
	}
	return set
}

// cpuTicks is pid's user+system CPU time in clock ticks (1/100 s on Linux).
func cpuTicks(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// After the command: state is field 3 of stat, so utime (14) and stime (15) are 11 and 12 here.
	ut, err1 := strconv.ParseInt(fields[11], 10, 64)
	st, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return ut + st, nil
}

// alive reports whether pid runs (a zombie counts as gone).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	return !strings.HasPrefix(s[strings.LastIndexByte(s, ')')+2:], "Z")
}

// settle checks what every fault test must end with: every count at 0 and no socket left
// open but the balancer's listeners (its connections all closed).
func settle(t *testing.T, b *balancer) {
	t.Helper()
	eventually(t, 10*time.Second, "every conn_count back to 0", func() bool { return activeConns(t, b.admn) == 0 })
	eventually(t, 10*time.Second, "balancer's sockets back to its listeners alone", func() bool { return connSockets(b.pid()) == 0 })
}

// clientRun is the outcome of many round trips.
type clientRun struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	firstErr   error
}

func (r *clientRun) record(err error) {
	if err == nil {
		r.ok.Add(1)
		return
	}
	r.failed.Add(1)
	r.mu.Lock()
	if r.firstErr == nil {
		r.firstErr = err
	}
	r.mu.Unlock()
}

// runClients makes workers goroutines do n sequential round trips each.
func runClients(addr string, workers, n, up, down int) *clientRun {
	var r clientRun
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				r.record(xferRoundTrip(addr, up, down))
			}
		}()
	}
	wg.Wait()
	return &r
}

func tail(s string, n int) string { return s[max(0, len(s)-n):] }

func itoa(n int) string { return strconv.Itoa(n) }

// halfSentTransfers opens n transfers through addr and sends half of each upload, so that
// they are in flight when the test strikes; each is closed when the test ends.
func halfSentTransfers(t *testing.T, addr string, n int) []*xferClient {
	t.Helper()
	clients := make([]*xferClient, n)
	for i := range clients {
		x, err := dialXfer(addr, maxStream, maxStream)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(x.close)
		if err := x.send(maxStream / 2); err != nil {
			t.Fatal(err)
		}
		clients[i] = x
	}
	return clients
}
