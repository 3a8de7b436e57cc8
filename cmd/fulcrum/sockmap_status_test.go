package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sockmapReply is what these tests read of /upstream/status.
type sockmapReply struct {
	DataPlane string `json:"data_plane"`
	Services  []struct {
		Active int64 `json:"active"`
	} `json:"services"`
	Sockmap *sockmapCounts `json:"sockmap"`
	raw     []byte
}

type sockmapCounts struct {
	Kernel   int64 `json:"kernel"`
	Relay    int64 `json:"relay"`
	Promoted int64 `json:"promoted"`
}

func (c sockmapCounts) String() string {
	return fmt.Sprintf("kernel %d, relay %d, promoted %d", c.Kernel, c.Relay, c.Promoted)
}

// active is the sum of the services' active counts, which kernel and relay add up to.
func (r sockmapReply) active() int64 {
	var n int64
	for _, s := range r.Services {
		n += s.Active
	}
	return n
}

func readSockmapStatus(t *testing.T, admin string) sockmapReply {
	t.Helper()
	body, code, err := adminGet(admin, "/upstream/status")
	if err != nil || code != 200 {
		t.Fatalf("status: %d %v %s", code, err, body)
	}
	r := sockmapReply{raw: body}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("status is not JSON: %v\n%s", err, body)
	}
	return r
}

// waitSockmap polls /upstream/status until its sockmap object is want, checking at each read
// that kernel and relay add up to the services' active total.
func waitSockmap(t *testing.T, admin string, want sockmapCounts, what string) {
	t.Helper()
	var last sockmapReply
	deadline := time.Now().Add(15 * time.Second)
	for {
		last = readSockmapStatus(t, admin)
		if last.Sockmap == nil {
			t.Fatalf("status has no sockmap object on the sockmap plane:\n%s", last.raw)
		}
		if got := last.Sockmap.Kernel + last.Sockmap.Relay; got != last.active() {
			t.Fatalf("kernel + relay = %d, but the services' active total is %d:\n%s", got, last.active(), last.raw)
		}
		if *last.Sockmap == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: status says %v, want %v", what, *last.Sockmap, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// heldConn dials addr and makes one round trip through an echo backend.
func heldConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	echoOnce(t, c)
	return c
}

// echoOnce sends a few bytes and reads them back.
func echoOnce(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := []byte("ping through the kernel")
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo: %q, %v", got, err)
	}
}

// sockmapMetrics reads the fulcrum_sockmap_* lines of /metrics.
func sockmapMetrics(t *testing.T, admin string) string {
	t.Helper()
	body, code, err := adminGet(admin, "/metrics")
	if err != nil || code != 200 {
		t.Fatalf("metrics: %d %v", code, err)
	}
	var out []string
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "fulcrum_sockmap_") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// promoteAll exchanges bytes on every connection of conns until the kernel holds kernel
// connections: a connection is judged at its start and again at each of its events, and one
// judgement may find a counter moving and leave the promotion to the next.
func promoteAll(t *testing.T, admin string, conns []net.Conn, kernel int64) {
	t.Helper()
	eventually(t, 15*time.Second, fmt.Sprintf("%d connections in the kernel", kernel), func() bool {
		for _, c := range conns {
			echoOnce(t, c)
		}
		s := readSockmapStatus(t, admin).Sockmap
		return s != nil && s.Kernel == kernel
	})
}

// TestSockmapStatusCounts_AtOnce: with --sockmap-after 0 every held connection is in the
// kernel, and /upstream/status and /metrics say so; a short-lived connection is counted as
// promoted and then gone; once every connection closed, kernel and relay are 0 again.
func TestSockmapStatusCounts_AtOnce(t *testing.T) {
	requireSockmap(t)
	be := startBackend(t, echoHandler)
	b := startBalancer(t, "--data-plane", "sockmap", "--sockmap-after", "0")
	addBackend(t, b.admn, be.Addr())
	waitSockmap(t, b.admn, sockmapCounts{}, "before any connection")

	var held []net.Conn
	for range 3 {
		held = append(held, heldConn(t, b.listen))
	}
	promoteAll(t, b.admn, held, 3)
	waitSockmap(t, b.admn, sockmapCounts{Kernel: 3, Promoted: 3}, "three held connections")
	short := heldConn(t, b.listen)
	promoteAll(t, b.admn, []net.Conn{short}, 4)
	short.Close()
	waitSockmap(t, b.admn, sockmapCounts{Kernel: 3, Promoted: 4}, "a short connection came and went")
	want := "fulcrum_sockmap_connections{where=\"kernel\"} 3\nfulcrum_sockmap_connections{where=\"relay\"} 0\nfulcrum_sockmap_pauses_total 0\nfulcrum_sockmap_promotions_total 4"
	if got := sockmapMetrics(t, b.admn); got != want {
		t.Errorf("metrics:\n%s\nwant:\n%s", got, want)
	}
	for _, c := range held {
		echoOnce(t, c) // the kernel relays them
		c.Close()
	}
	waitSockmap(t, b.admn, sockmapCounts{Promoted: 4}, "every connection closed")
}

// TestSockmapStatusCounts_DefaultAge: with the default --sockmap-after, a connection stays on
// the relay until it is older than the age and moves at its next bytes; status counts it on
// the relay, then in the kernel; an idle young connection stays on the relay.
func TestSockmapStatusCounts_DefaultAge(t *testing.T) {
	requireSockmap(t)
	be := startBackend(t, echoHandler)
	b := startBalancer(t, "--data-plane", "sockmap")
	addBackend(t, b.admn, be.Addr())

	var old []net.Conn
	for range 2 {
		old = append(old, heldConn(t, b.listen))
	}
	promoteAll(t, b.admn, old, 2) // promotion comes with a connection's first bytes after the age
	waitSockmap(t, b.admn, sockmapCounts{Kernel: 2, Promoted: 2}, "two old connections")
	young, promoted := holdYoungOnRelay(t, b)
	want := fmt.Sprintf("fulcrum_sockmap_connections{where=\"kernel\"} 2\nfulcrum_sockmap_connections{where=\"relay\"} 1\nfulcrum_sockmap_pauses_total 0\nfulcrum_sockmap_promotions_total %d", promoted)
	if got := sockmapMetrics(t, b.admn); got != want {
		t.Errorf("metrics:\n%s\nwant:\n%s", got, want)
	}
	young.Close()
	for _, c := range old {
		echoOnce(t, c)
		c.Close()
	}
	waitSockmap(t, b.admn, sockmapCounts{Promoted: promoted}, "every connection closed")
}

// holdYoungOnRelay opens a connection that sends nothing: it has no event to be judged at
// after its start, where it is younger than the age, so it stays on the relay; the status
// counts it there beside the two old connections in the kernel. A start slower than the age
// (a loaded machine) promotes it at once: it is then closed and another one tried. It returns
// the connection and the promotions so far.
func holdYoungOnRelay(t *testing.T, b *balancer) (net.Conn, int64) {
	t.Helper()
	for try := 0; ; try++ {
		young, err := net.Dial("tcp", b.listen)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { young.Close() })
		var r sockmapReply
		eventually(t, 15*time.Second, "the young connection counted", func() bool {
			r = readSockmapStatus(t, b.admn)
			return r.active() == 3
		})
		if try < 5 && r.Sockmap != nil && r.Sockmap.Kernel == 3 {
			t.Logf("try %d: the young connection was promoted at its start (slower than the age); another", try)
			young.Close()
			eventually(t, 15*time.Second, "the young connection gone", func() bool { return readSockmapStatus(t, b.admn).active() == 2 })
			continue
		}
		promoted := 2 + int64(try)
		waitSockmap(t, b.admn, sockmapCounts{Kernel: 2, Relay: 1, Promoted: promoted}, "a young idle connection on the relay")
		return young, promoted
	}
}

// TestSockmapStatusAbsentOnEpoll: the epoll plane's status and metrics have no sockmap counts.
func TestSockmapStatusAbsentOnEpoll(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the epoll plane is Linux only")
	}
	be := startBackend(t, echoHandler)
	b := startBalancer(t, "--data-plane", "epoll")
	addBackend(t, b.admn, be.Addr())
	c := heldConn(t, b.listen)
	defer c.Close()
	r := readSockmapStatus(t, b.admn)
	if r.DataPlane != "epoll" || r.Sockmap != nil || bytes.Contains(r.raw, []byte(`"sockmap"`)) {
		t.Errorf("epoll plane's status has data_plane %q and a sockmap object:\n%s", r.DataPlane, r.raw)
	}
	if got := sockmapMetrics(t, b.admn); got != "" {
		t.Errorf("epoll plane's metrics have sockmap series:\n%s", got)
	}
}

// TestSockmapStatusCountsUnderChurn: while connections open, move into the kernel and close
// all the time, every status read has kernel and relay at 0 or more, adding up to the
// services' active total; once the clients stop, both are 0.
func TestSockmapStatusCountsUnderChurn(t *testing.T) {
	requireSockmap(t)
	be := startBackend(t, serveXfer)
	b := startBalancer(t, "--data-plane", "sockmap", "--sockmap-after", "0")
	addBackend(t, b.admn, be.Addr())
	var stop atomic.Bool
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				if err := xferRoundTrip(b.listen, 4<<10, 4<<10); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	var inKernel int
	for range 100 {
		r := readSockmapStatus(t, b.admn)
		s := r.Sockmap
		if s == nil || s.Kernel < 0 || s.Relay < 0 || s.Kernel+s.Relay != r.active() {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("status under churn: sockmap %v, active %d:\n%s", s, r.active(), r.raw)
		}
		if s.Kernel > 0 {
			inKernel++
		}
	}
	stop.Store(true)
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d round trips failed", failed.Load())
	}
	t.Logf("%d of 100 status reads saw connections in the kernel", inKernel)
	eventually(t, 15*time.Second, "kernel and relay back to 0", func() bool {
		s := readSockmapStatus(t, b.admn).Sockmap
		return s != nil && s.Kernel == 0 && s.Relay == 0 && s.Promoted > 0
	})
}
