package listener

import (
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DataPath moves the bytes of one proxied connection. Join returns only when both directions
// have ended and both sockets are closed, so the caller may release the backend right after.
type DataPath interface {
	Join(client, backend *net.TCPConn, m Meter) Traffic
}

// Splice is the DataPath that lets the kernel move the bulk of the bytes. Each direction waits
// for data holding nothing, then moves it in steps (pump): a small message is read once into a
// pooled 16 KiB buffer and written (two syscalls, cheaper than splice for a few bytes); once a
// read fills that buffer, what is queued behind it goes by (*net.TCPConn).ReadFrom over an
// *io.LimitedReader, which Go turns into splice(2): zero copy for bulk transfers. Meters hear
// every step, so counters move while splice stays on.
type Splice struct {
	// ChunkSize is the most one splice step moves; zero means 1 MiB.
	ChunkSize int64
	// IdleTimeout closes a connection on which no byte has moved either way for this long,
	// half-closed ones included (Traffic.Err is then ErrIdle); zero means never.
	IdleTimeout time.Duration
}

var _ DataPath = Splice{}

const defaultChunk = 1 << 20

// Join implements DataPath. A FIN in one direction is passed on with CloseWrite while the other
// direction keeps flowing (half-close); an error in either direction closes both sockets with a
// reset, so the peer on the other side learns of the failure. A destination whose peer reset
// after its FIN ends only the direction writing to it (copy): the other direction first
// delivers what that peer sent.
func (s Splice) Join(client, backend *net.TCPConn, m Meter) Traffic {
	idle := watchIdle(client, backend, s.IdleTimeout)
	m = idle.meter(m)
	var wg sync.WaitGroup
	var down half
	var ended atomic.Int32 // directions that have ended with a FIN
	wg.Add(1)
	go s.spliceBackendToClient(client, backend, m, &ended, &down, &wg)
	up := s.copy(backend, client, m, true, &ended)
	wg.Wait()
	idled := idle.stop()
	client.Close()
	backend.Close()
	if down.panicked != nil {
		panic(down.panicked) // for the connection's goroutine, which recovers, logs and releases
	}
	t := Traffic{Up: up.n, Down: down.n, Err: firstCause(up.err, down.err)}
	if idled {
		t.Err = ErrIdle
	}
	return t
}

// spliceBackendToClient is the second direction's goroutine, named so stack dumps say what it
// is. It ends when the backend sends FIN or either socket fails or is closed. A panic in it
// (a Meter's, say) would end the process: it resets both sockets instead, which ends the
// other direction, and Join raises it again on the connection's own goroutine.
func (s Splice) spliceBackendToClient(client, backend *net.TCPConn, m Meter, ended *atomic.Int32, out *half, wg *sync.WaitGroup) {
	defer wg.Done()
	defer func() {
		if v := recover(); v != nil {
			abort(client, backend)
			out.panicked = fmt.Sprintf("%v (copying backend to client)\n%s", v, debug.Stack())
		}
	}()
	*out = s.copy(client, backend, m, false, ended)
}

// half is the outcome of one direction.
type half struct {
	n        int64
	err      error
	panicked any // what the direction's goroutine recovered from, with its stack
}

// copy moves one direction, src to dst, until src's FIN, which it passes on, or a failure,
// which resets both sockets (abort). Except when dst's peer is gone but what it sent is
// not: a peer that reset after sending its FIN (a write to dst fails with EPIPE; before its
// FIN, with ECONNRESET), or one to which a FIN cannot be passed on as it was reset
// (ENOTCONN). Its answer, often its FIN too, is still in dst: this direction ends alone, and
// the other one reads dst to its end and delivers what it holds, then ends with EOF if the
// peer's FIN came before its reset, or with the reset if not. Reads never fail with EPIPE,
// and a reset socket reads as EOF or its error, never ENOTCONN: a source's failure still
// resets both sockets.
func (s Splice) copy(dst, src *net.TCPConn, m Meter, up bool, ended *atomic.Int32) half {
	chunk := s.ChunkSize
	if chunk <= 0 {
		chunk = defaultChunk
	}
	p, err := newPump(dst, src)
	if err != nil {
		abort(dst, src)
		return half{n: 0, err: err}
	}
	var total int64
	for {
		n, eof, err := p.step(chunk)
		total += n
		if m != nil && n > 0 {
			m.Moved(up, n)
		}
		if err != nil {
			if !errors.Is(err, syscall.EPIPE) { // dst's peer reset after its FIN
				abort(dst, src)
			}
			return half{n: total, err: err}
		}
		if eof {
			if ended.Add(1) == 2 {
				// The other direction is over too: Join's close sends this FIN, and a
				// shutdown first would only cost a syscall.
				return half{n: total, err: nil}
			}
			err := dst.CloseWrite()
			switch {
			case err == nil, errors.Is(err, net.ErrClosed):
			case errors.Is(err, syscall.ENOTCONN): // dst's peer reset: the other direction decides
			default:
				abort(dst, src)
				return half{n: total, err: err}
			}
			return half{n: total, err: nil}
		}
	}
}

// abort closes both sockets with a reset: a failure on one side must not look like a clean
// end to the other. Closing also unblocks the other direction's copy.
func abort(a, b *net.TCPConn) {
	for _, c := range [2]*net.TCPConn{a, b} {
		c.SetLinger(0) // fails only on a closed socket, which needs nothing more
		c.Close()
	}
}

// firstCause picks the error that ended the connection: once one direction fails and aborts,
// the other sees only its socket closed under it.
func firstCause(a, b error) error {
	if a == nil || errors.Is(a, net.ErrClosed) && b != nil {
		return b
	}
	return a
}
