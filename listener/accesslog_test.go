package listener

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the access log's concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines decodes every JSON line written so far.
func (b *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("access log line %q is not JSON: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func (b *lockedBuffer) waitLines(t *testing.T, n int) []map[string]any {
	t.Helper()
	resEventually(t, fmt.Sprintf("%d access log lines", n), func() bool { return len(b.lines(t)) >= n })
	return b.lines(t)
}

func TestAccessLogFinishedConnection(t *testing.T) {
	be := startPPBackend(t, "tcp4", "")
	var out lockedBuffer
	addr := startPPServer(t, "tcp4", ProxyProtocol{}, Observers{NewAccessLog(&out)}, poolOf(t, be))
	c := dialTCP(t, addr)
	if got := ppRoundTrip(t, c, nil, []byte("hello")); string(got) != "hello" {
		t.Fatalf("echo %q", got)
	}
	l := out.waitLines(t, 1)[0]
	want := map[string]any{
		"msg": "conn", "client": c.LocalAddr().String(), "local": c.RemoteAddr().String(),
		"backend": be.addr().Key(), "bytes_up": 5.0, "bytes_down": 5.0, "end": "eof",
	}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("%s = %v, want %v (line %v)", k, l[k], v, l)
		}
	}
	if d, ok := l["duration"].(float64); !ok || d <= 0 || d > 60 {
		t.Errorf("duration = %v, want seconds", l["duration"])
	}
}

func TestAccessLogRejectedAndReset(t *testing.T) {
	t.Run("rejected", func(t *testing.T) {
		var out lockedBuffer
		addr := startPPServer(t, "tcp4", ProxyProtocol{}, NewAccessLog(&out), poolOf(t))
		dialTCP(t, addr)
		l := out.waitLines(t, 1)[0]
		if end, _ := l["end"].(string); !strings.HasPrefix(end, "rejected: ") || l["backend"] != nil {
			t.Errorf("line %v: want end rejected and no backend", l)
		}
	})
	t.Run("reset", func(t *testing.T) {
		be := startPPBackend(t, "tcp4", "")
		var out lockedBuffer
		addr := startPPServer(t, "tcp4", ProxyProtocol{}, NewAccessLog(&out), poolOf(t, be))
		c := dialTCP(t, addr)
		c.Write([]byte("x"))
		be.next(t) // the backend has the connection: the proxy is splicing
		c.SetLinger(0)
		c.Close() // RST
		if l := out.waitLines(t, 1)[0]; l["end"] != "reset" {
			t.Errorf("end = %v, want reset (line %v)", l["end"], l)
		}
	})
}

func TestEndReason(t *testing.T) {
	op := func(err error) error {
		return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)}
	}
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, "eof"},
		{op(syscall.ECONNRESET), "reset"},
		{op(syscall.EPIPE), "reset"},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, "timeout"},
		{ErrIdle, "timeout"},
		{fmt.Errorf("x: %w", net.ErrClosed), "closed"},
		{errors.New("boom"), "error: boom"},
	} {
		if got := EndReason(c.err); got != c.want {
			t.Errorf("EndReason(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// The PROXY client shows in the access log, with the balancer in front as peer.
func TestAccessLogProxyClient(t *testing.T) {
	be := startPPBackend(t, "tcp4", "")
	var out lockedBuffer
	pp := ProxyProtocol{Accept: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	addr := startPPServer(t, "tcp4", pp, NewAccessLog(&out), poolOf(t, be))
	c := dialTCP(t, addr)
	ppRoundTrip(t, c, inboundHeader(t, 2, "198.51.100.9:1000", "192.0.2.1:80"), []byte("abc"))
	l := out.waitLines(t, 1)[0]
	if l["client"] != "198.51.100.9:1000" || l["peer"] != c.LocalAddr().String() || l["bytes_up"] != 3.0 {
		t.Errorf("line %v: want the header's client, the real peer and 3 bytes up", l)
	}
}

// A connection closed by the idle timeout is logged as a timeout.
func TestAccessLogIdleTimeout(t *testing.T) {
	be := startPPBackend(t, "tcp4", "")
	var out lockedBuffer
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Picker: poolOf(t, be), Observer: NewAccessLog(&out), DataPath: Splice{IdleTimeout: 200 * time.Millisecond}, Logger: quiet}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() { s.Shutdown(context.Background()); <-done })
	c := dialTCP(t, ln.Addr().String())
	c.Write([]byte("x")) // then nothing either way
	if l := out.waitLines(t, 1)[0]; l["end"] != "timeout" || l["bytes_up"] != 1.0 {
		t.Errorf("line %v: want end timeout after one byte up", l)
	}
}
