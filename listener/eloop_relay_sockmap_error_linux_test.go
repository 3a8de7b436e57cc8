//go:build linux

package listener

import (
	"bytes"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestSockmapSlowReaderGetsAnswerBeforeBackendReset: a promoted connection's backend sends a
// large answer and its FIN, then resets, while the client has read none of it. The kernel
// has taken the whole answer off the backend socket, but most of it is still on its way to
// the slow client, in the client socket's send queue or the kernel's own: the loop must pass
// the FIN on only once every byte is delivered to that socket, and the reset, whether it
// comes with the FIN or after the FIN has been passed on, must not reset the client, which
// would throw that queue away.
func TestSockmapSlowReaderGetsAnswerBeforeBackendReset(t *testing.T) {
	answer := bytes.Repeat([]byte("slow-answer-"), (1<<20)/12)
	reset := make(chan error, 1)
	backend := func(c *net.TCPConn) {
		if _, err := io.ReadFull(c, make([]byte, len("request"))); err != nil {
			reset <- err
			return
		}
		reset <- answerThenReset(c, answer, true)
	}
	_, el, addr := smProxy(t, -1, backend, nil)
	// A small receive buffer, set before connecting, keeps the answer in the kernel.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := conn.(*net.TCPConn)
	t.Cleanup(func() { c.Close() })
	resEventually(t, "the connection to be promoted", func() bool { return el.SockmapStats().InKernel == 1 })
	if _, err := c.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-reset:
		if err != nil {
			t.Fatalf("backend: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the backend did not answer and reset within 15s")
	}

	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, answer) {
		t.Fatalf("the client got %d bytes of the %d-byte answer, then %v; want all of it, then EOF", len(got), len(answer), err)
	}
}
