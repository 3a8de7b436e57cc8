//go:build linux

package listener

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/fulcrumlb/fulcrum/listener/internal/poll"
)

// spliceRelay is the first byte mover (moverSplice): each direction reads small messages into
// the loop's 16 KiB buffer and writes them at once; once a read fills the buffer, what is
// queued behind it is spliced, zero copy, through a pipe of the loop's pool. A FIN is passed
// on with shutdown(SHUT_WR) while the other direction keeps flowing.
type spliceRelay struct{}

var _ relay = spliceRelay{}

// spliceConn is spliceRelay's state of one connection, kept in its loopConn.
type spliceConn struct {
	up, down direction // client → backend, backend → client
	// failed is why a direction could not deliver (its destination was reset): the other
	// direction still relays what that socket holds, then the connection ends with a reset.
	failed error
	// kern is what the kernel counted on both sockets when the idle deadline last found a
	// direction stalled on a slow reader; nil until then (most connections never stall).
	kern *[2]tcpCounters
}

// direction is the state of one direction of a relayed connection.
type direction struct {
	pending  []byte     // read but not yet written; src is not read until it drains
	off      int        // how much of pending is written
	pipe     *poll.Pipe // held only while bytes sit in it
	inPipe   int
	n        int64 // bytes read from src
	readable bool  // src may have bytes (or its FIN) to read
	rdhup    bool  // src's peer sent FIN: a short read no longer means drained
	bulk     bool  // the last read filled the buffer: splice
	eof      bool  // src's FIN was read
	done     bool  // the FIN was passed on to dst
}

// queued reports whether bytes wait for dst.
func (d *direction) queued() bool { return d.off < len(d.pending) || d.inPipe > 0 }

// start implements relay: the prefix waits in front of the client → backend direction, then
// both directions flow.
func (spliceRelay) start(l *loop, c *loopConn, h handoff) {
	if h.clientEv&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.up.readable = true
		c.up.rdhup = h.clientEv&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
	}
	c.down.readable = h.backendEv&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
	c.down.rdhup = h.backendEv&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
	c.up.pending, c.up.off = h.prefix, 0
	if h.clientBytes > 0 {
		l.moved(c, &c.up, h.clientBytes)
	}
	l.pump(c, &c.up)
	l.pump(c, &c.down)
}

// event implements relay: readable feeds the direction the socket is the source of, writable
// drains the direction it is the destination of.
//
// An error (a reset, mostly) is not looked at first: what the peer sent before it — an answer,
// and its FIN — is still in the socket and must go on. Reading returns those bytes first, then
// EOF if the FIN came before the reset (the peer's stream is whole) or the error if it did not;
// a write to the socket returns the error. So an error is read as readable and writable; once
// everything the peer sent has gone on, nothing more can reach it, and the connection ends as
// after a refused write (fail): with no reset when the peer's FIN came first, as the other
// socket may still hold much of the answer for a slow reader, which a reset would throw away.
func (spliceRelay) event(l *loop, c *loopConn, fromClient bool, ev uint32) {
	fd, in, out := c.cfd, &c.up, &c.down
	if !fromClient {
		fd, in, out = c.bfd, &c.down, &c.up
	}
	if ev&unix.EPOLLERR != 0 && in.done {
		if err := poll.SocketError(fd, "write"); err != nil {
			l.fail(c, out, err)
			return
		}
	}
	const ended = unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR
	if ev&(unix.EPOLLIN|ended) != 0 {
		in.readable = true
		in.rdhup = in.rdhup || ev&ended != 0
		l.pump(c, in)
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 && out.queued() {
		l.pump(c, out)
	}
}

// stop implements relay.
func (spliceRelay) stop(l *loop, c *loopConn) (up, down int64) {
	l.dropPipe(&c.up)
	l.dropPipe(&c.down)
	c.up.pending, c.down.pending = nil, nil
	return c.up.n, c.down.n
}

// tick implements relay: the splice relay sets no deadline of its own.
func (spliceRelay) tick(*loop, *loopConn) bool { return false }

// progressed implements relay: it reports whether the kernel counted bytes received or acknowledged on either
// socket since its last look, while a direction waits to write to a slow reader. The loop
// writes to such a reader again only once a third of the send buffer is free, which may take
// longer than the idle timeout although the reader keeps reading; the goroutine plane's
// idleWatch looks at the same counters. With nothing queued the loop sees every byte itself.
// The first look compares with zero: a reader that stopped for good is closed after one
// more timeout.
func (spliceRelay) progressed(c *loopConn) bool {
	if !c.up.queued() && !c.down.queued() {
		return false
	}
	now := [2]tcpCounters{fdTCPCounters(c.cfd), fdTCPCounters(c.bfd)}
	if c.kern == nil {
		c.kern = new([2]tcpCounters)
	}
	moved := *c.kern != now
	*c.kern = now
	return moved
}

// dropPipe gives a direction's pipe back, or closes it if bytes are still in it.
func (l *loop) dropPipe(d *direction) {
	if d.pipe == nil {
		return
	}
	if d.inPipe > 0 {
		l.pipes.Discard(d.pipe)
	} else {
		l.pipes.Put(d.pipe)
	}
	d.pipe, d.inPipe = nil, 0
}

// ends returns a direction's source and destination sockets.
func (c *loopConn) ends(d *direction) (src, dst int) {
	if d == &c.up {
		return c.cfd, c.bfd
	}
	return c.bfd, c.cfd
}

// pump moves what d's source has to its destination until the source is drained, the
// destination pushes back (then the source is not read until it drains: back-pressure), or
// the direction ends.
func (l *loop) pump(c *loopConn, d *direction) {
	src, dst := c.ends(d)
	for c.state == stateRelaying && !d.done {
		if d.queued() {
			if !l.drain(c, d, dst) || d.queued() {
				return // an EPOLLOUT edge on dst resumes it
			}
		}
		switch {
		case d.eof:
			l.passFIN(c, d, dst)
			return
		case !d.readable:
			if c.failed != nil { // a failed connection relays only what its sockets hold
				l.finish(c, c.failed, true)
			}
			return
		case d.bulk:
			l.spliceIn(c, d, src)
		default:
			l.readSmall(c, d, src, dst)
		}
	}
}

// readSmall reads into the loop's buffer and writes at once; what the destination does not
// take is kept for this connection alone. A read that fills the buffer switches to splice.
func (l *loop) readSmall(c *loopConn, d *direction, src, dst int) {
	n, err := poll.Read(src, l.buf)
	switch {
	case err == unix.EAGAIN:
		d.readable = false
		return
	case err != nil:
		l.finish(c, os.NewSyscallError("read", err), true)
		return
	case n == 0:
		d.eof = true
		return
	}
	// A short read drains the socket, unless its FIN has come: then read on to see it.
	d.readable = n == len(l.buf) || d.rdhup
	d.bulk = n == len(l.buf)
	l.moved(c, d, n)
	w, err := poll.Write(dst, l.buf[:n])
	if err != nil && err != unix.EAGAIN {
		l.fail(c, d, os.NewSyscallError("write", err))
		return
	}
	w = max(w, 0)
	if w < n {
		d.pending = append(d.pending[:0], l.buf[w:n]...)
		d.off = 0
	}
}

// spliceIn moves what the source has queued into a pipe, zero copy; drain then splices it on.
// It runs only with the pipe empty, so EAGAIN can only mean the socket is.
func (l *loop) spliceIn(c *loopConn, d *direction, src int) {
	if d.pipe == nil {
		if d.pipe = l.pipes.Take(); d.pipe == nil {
			d.bulk = false // no pipe to spare: copy through the buffer
			return
		}
	}
	n, err := unix.Splice(src, nil, d.pipe.W, nil, d.pipe.Size, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	switch {
	case err == unix.EAGAIN:
		d.readable = false
		l.dropPipe(d)
		return
	case err != nil:
		l.finish(c, os.NewSyscallError("splice", err), true)
		return
	case n == 0:
		d.eof = true
		l.dropPipe(d)
		return
	}
	d.inPipe = int(n)
	d.bulk = n >= smallRead // a short chunk: back to the buffer for small messages
	l.moved(c, d, int(n))
}

// drain writes what d holds to dst until it is all written or dst would block. It stops only
// on EAGAIN, never on a short write: EAGAIN is what makes the kernel send the EPOLLOUT edge
// that resumes it. It returns false when the connection failed.
func (l *loop) drain(c *loopConn, d *direction, dst int) bool {
	for d.off < len(d.pending) {
		w, err := poll.Write(dst, d.pending[d.off:])
		if err == unix.EAGAIN {
			return true
		}
		if err != nil {
			l.fail(c, d, os.NewSyscallError("write", err))
			return false
		}
		c.lastActive = clock(l.now)
		if d.off += w; d.off == len(d.pending) {
			d.pending, d.off = nil, 0 // a slow reader's backlog is not kept once written
		}
	}
	for d.inPipe > 0 {
		n, err := unix.Splice(d.pipe.R, nil, dst, nil, d.inPipe, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if err == unix.EAGAIN {
			return true
		}
		if err != nil {
			l.fail(c, d, os.NewSyscallError("splice", err))
			return false
		}
		if n == 0 {
			l.finish(c, fmt.Errorf("splice to socket: %w", io.ErrNoProgress), true)
			return false
		}
		c.lastActive = clock(l.now)
		if d.inPipe -= int(n); d.inPipe == 0 {
			l.dropPipe(d)
		}
	}
	return true
}

// moved accounts for n bytes read from d's source.
func (l *loop) moved(c *loopConn, d *direction, n int) {
	d.n += int64(n)
	c.lastActive = clock(l.now)
	if c.meter != nil {
		c.meter.Moved(d == &c.up, int64(n))
	}
}

// passFIN ends a direction whose source sent FIN and whose bytes are all delivered: the FIN
// goes on with shutdown(SHUT_WR) while the other direction keeps flowing; once both have
// ended the connection closes. After a failure (fail) it closes too, the failure its cause,
// and with a reset only if the peer reset before its FIN (cutShort).
//
// A destination that is no longer connected (its peer reset, say after closing with nothing
// left to send) takes d's bytes but not its FIN; what that peer sent first is still to be read
// from the same socket, and the other direction decides the end: EOF if the peer's FIN came
// before its reset, the reset if not.
func (l *loop) passFIN(c *loopConn, d *direction, dst int) {
	d.done = true
	other := c.other(d)
	if other.done {
		l.finish(c, c.failed, cutShort(c.failed)) // closing sends this FIN; a shutdown first would cost a syscall
		return
	}
	err := poll.Shutdown(dst, unix.SHUT_WR)
	switch {
	case err == nil:
	case err == unix.ENOTCONN && promoted(c):
		// The reset that closed dst raised an error event, still to come: the sockmap
		// mover lets the other direction decide the end there (socketFailed).
	case err == unix.ENOTCONN:
		l.readToEnd(c, other)
	default:
		l.finish(c, os.NewSyscallError("shutdown", err), true)
	}
}

// fail ends direction d, whose destination refused its bytes because its peer reset or closed
// (ECONNRESET, EPIPE), but not yet the connection: the other direction first relays what
// that same socket still holds, such as the answer the peer sent before it reset, and the
// connection then ends, err its cause (passFIN). Any other error, and a connection whose
// bytes the kernel moves (promoted by the sockmap mover), ends it at once with a reset.
func (l *loop) fail(c *loopConn, d *direction, err error) {
	if !errors.Is(err, unix.ECONNRESET) && !errors.Is(err, unix.EPIPE) || promoted(c) {
		l.finish(c, err, true)
		return
	}
	if c.failed == nil {
		c.failed = err
	}
	if !l.endDirection(c, d) {
		l.readToEnd(c, c.other(d))
	}
}

// endDirection ends d, whose destination can take nothing more, dropping what waits for it;
// once the other direction has ended too it ends the connection, c.failed its cause, and
// reports true.
func (l *loop) endDirection(c *loopConn, d *direction) bool {
	d.done = true
	l.dropPipe(d)
	d.pending, d.off = nil, 0
	if !c.other(d).done {
		return false
	}
	l.finish(c, c.failed, cutShort(c.failed))
	return true
}

// cutShort reports whether the write error err says its socket's peer reset before sending
// its FIN, so that what was read from that socket may be cut short: the connection ends with
// a reset then. A socket reset after its peer's FIN (in CLOSE_WAIT) reports EPIPE instead,
// and once its bytes have gone on the stream is whole: a reset would only throw away what the
// kernel still has to send of it. (A client whose bytes are left unread still gets a reset
// from the kernel, as from a backend that closed on them.) The error is the socket's own
// (SO_ERROR), which the failed write took: reading the socket can no longer tell.
func cutShort(err error) bool { return err != nil && !errors.Is(err, unix.EPIPE) }

// readToEnd relays what d's source, a socket that is no longer connected, still holds: it is
// read until EOF or its error, never until EAGAIN, so d ends without waiting for its peer.
func (l *loop) readToEnd(c *loopConn, d *direction) {
	d.readable, d.rdhup = true, true
	l.pump(c, d)
}

// other is the direction opposite d.
func (c *loopConn) other(d *direction) *direction {
	if d == &c.up {
		return &c.down
	}
	return &c.up
}
