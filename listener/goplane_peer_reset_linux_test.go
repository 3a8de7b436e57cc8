//go:build linux

package listener

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// On the goroutine plane, the client's bytes or FIN may reach the balancer after a backend
// that answered, sent its FIN and was then reset: passing them on fails (EPIPE, ENOTCONN).
// That must end only the upload: the answer and FIN are still in the backend socket, for the
// download to deliver. These tests run the upload (Splice.copy) alone, after the backend's
// reset has reached the balancer's socket, so the order is forced, and then read the backend
// socket as the download would: a reset of both sockets would leave nothing to read. The
// download is held to the same rule, for a client that sent its last bytes and FIN, then
// reset. TestRelayDeliversAnswerBeforeBackendReset cannot force that order on this plane: it
// has no loop to hold, and the download may deliver the answer first.

func TestGoplaneWriteToResetPeerKeepsItsAnswer(t *testing.T) {
	cases := []struct {
		name string
		// down: the client answers and resets, and the download writes to it; otherwise the
		// backend answers and resets, and the upload writes to it.
		down bool
		// finFirst: the peer sent its FIN before its reset; otherwise it reset without one.
		finFirst bool
		// fin: the other side sends its FIN after the reset; otherwise the bytes "more".
		fin  bool
		want error // the writing direction's end: nil, or the error it failed with
	}{
		{"client bytes after answer FIN reset", false, true, false, syscall.EPIPE},
		{"client FIN after answer FIN reset", false, true, true, nil},
		{"client bytes after answer reset", false, false, false, syscall.ECONNRESET},
		{"backend bytes after client bytes FIN reset", true, true, false, syscall.EPIPE},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			answer := bytes.Repeat([]byte("answer-"), 1<<10)
			cl, pc := loopbackPair(t) // the client, the balancer's client socket
			pb, be := loopbackPair(t) // the balancer's backend socket, the backend
			// The peer that resets, the balancer's socket to it, and the other side's.
			peer, gone, other, from := be, pb, cl, pc
			if tc.down {
				peer, gone, other, from = cl, pc, be, pb
			}
			if err := answerThenReset(peer, answer, tc.finFirst); err != nil {
				t.Fatalf("peer: %v", err)
			}
			if err := waitTCPInfo(gone, func(i *unix.TCPInfo) bool { return i.State == unix.BPF_TCP_CLOSE }); err != nil {
				t.Fatalf("the peer's reset did not reach the balancer: %v", err)
			}
			if tc.fin {
				if err := other.CloseWrite(); err != nil {
					t.Fatal(err)
				}
			} else if _, err := other.Write([]byte("more")); err != nil {
				t.Fatal(err)
			}

			var ended atomic.Int32
			h := Splice{}.copy(gone, from, nil, !tc.down, &ended)
			if !errors.Is(h.err, tc.want) {
				t.Fatalf("the direction writing to the reset peer ended with %v, want %v", h.err, tc.want)
			}
			gone.SetReadDeadline(time.Now().Add(15 * time.Second))
			got, err := io.ReadAll(gone)
			if !tc.finFirst {
				// A reset before the peer's FIN is passed on: both sockets are reset.
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("the reset peer's socket read %d bytes then %v, want it closed by the reset", len(got), err)
				}
				other.SetReadDeadline(time.Now().Add(15 * time.Second))
				if _, err := io.ReadAll(other); !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("the other side read %v, want a reset", err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, answer) {
				t.Fatalf("the reset peer's socket gave %d bytes of its %d-byte answer, then %v: the failed write threw away the answer and FIN the peer sent before its reset", len(got), len(answer), err)
			}
		})
	}
}

// TestGoplaneJoinDeliversAnswerAfterUploadFails: through Join, the client gets the whole
// answer and a clean end although the upload failed first. The download is held after its
// first step until the upload has read the client's bytes, and so found the backend gone.
func TestGoplaneJoinDeliversAnswerAfterUploadFails(t *testing.T) {
	answer := bytes.Repeat([]byte("answer-"), (40<<10)/7) // more than one step's 16 KiB
	cl, pc := loopbackPair(t)
	pb, be := loopbackPair(t)
	if err := answerThenReset(be, answer, true); err != nil {
		t.Fatalf("backend: %v", err)
	}
	if err := waitTCPInfo(pb, func(i *unix.TCPInfo) bool { return i.State == unix.BPF_TCP_CLOSE }); err != nil {
		t.Fatalf("the backend's reset did not reach the balancer: %v", err)
	}
	if _, err := cl.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	m := &holdDownMeter{held: make(chan struct{}), free: make(chan struct{})}
	joined := make(chan Traffic, 1)
	go func() { joined <- Splice{}.Join(pc, pb, m) }()
	select {
	case <-m.held:
	case tr := <-joined:
		t.Fatalf("Join returned %+v before the download moved a byte: the upload's failure reset both sockets", tr)
	}
	rc, err := pc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	resEventually(t, "the upload reads the client's bytes", func() bool {
		n := 0
		if err := rc.Control(func(fd uintptr) { n = inQueue(fd) }); err != nil {
			return true // closed: the upload has failed
		}
		return n == 0
	})
	close(m.free)

	cl.SetReadDeadline(time.Now().Add(15 * time.Second))
	got, err := io.ReadAll(cl)
	if err != nil || !bytes.Equal(got, answer) {
		t.Fatalf("the client got %d bytes of the %d-byte answer, then %v: the upload's failure threw the rest away", len(got), len(answer), err)
	}
	tr := <-joined
	if tr.Down != int64(len(answer)) || !errors.Is(tr.Err, syscall.EPIPE) {
		t.Errorf("Join returned %+v, want %d bytes down and the upload's EPIPE", tr, len(answer))
	}
}

// holdDownMeter holds the download in its first Moved until free is closed.
type holdDownMeter struct {
	held, free chan struct{}
	once       sync.Once
}

func (m *holdDownMeter) Moved(up bool, _ int64) {
	if !up {
		m.once.Do(func() { close(m.held); <-m.free })
	}
}

func (*holdDownMeter) Flush() {}

// loopbackPair is a connected pair of loopback TCP sockets: the dialled end and the
// accepted one. Cleanup closes both.
func loopbackPair(t *testing.T) (dialled, accepted *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return c.(*net.TCPConn), a.(*net.TCPConn)
}
