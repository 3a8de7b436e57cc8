//go:build linux

package listener

import (
	"os"

	"golang.org/x/sys/unix"

	"github.com/fulcrumlb/fulcrum/listener/internal/poll"
)

// An error on a promoted connection's socket is, mostly, its peer's reset, and often a reset
// that came after the peer had sent everything: an answer, then its FIN (a backend that
// closed and whose kernel had no TIME_WAIT slot left answers the FIN passed on to it with a
// reset). The kernel has taken those bytes off the socket, but may still be handing them to
// the other socket: its redirects are asynchronous. As on the splice relay (spliceRelay.event),
// what the peer sent before its reset goes on first, and the reset decides the end only if it
// came before the peer's FIN:
//   - the direction into the failed socket ends at once: nothing more can reach its peer;
//   - the direction out of it ends as at a FIN: one that came before the reset is passed on
//     once the kernel has delivered every byte before it (settle), and the connection closes
//     without a reset; after a reset that came first, the connection is reset once those
//     bytes are delivered.

// socketFailed handles an error event on fd, the source of d, of a promoted connection.
func (r sockmapRelay) socketFailed(l *loop, c *loopConn, fd int, d *direction) {
	info, err := poll.TCPInfo(fd)
	switch mode := c.kdir(d).mode; {
	case err != nil || info.State != unix.BPF_TCP_CLOSE: // not a connection that ended
		failOnError(l, c, fd)
	case d.done, d.eof, mode == onRelay:
		// All fd's peer sent has gone on, FIN included: a reset would only throw away what
		// the other socket still has to send of it (a slow reader's tail). Or settle passes
		// on the FIN already seen, once its bytes are delivered; or the relay reads what fd
		// holds (sourceEvent): its bytes, then EOF or the error.
		r.cutOff(l, c, c.other(d), fd)
	case mode == paused:
		r.pausedFailed(l, c, fd, d)
	default:
		r.kernelSourceFailed(l, c, fd, d)
	}
}

// kernelSourceFailed handles the end of fd, the source of d, which the kernel moves: a peek
// tells whether its peer's FIN came before the error.
func (r sockmapRelay) kernelSourceFailed(l *loop, c *loopConn, fd int, d *direction) {
	n, err := peek(fd, 1)
	switch {
	case n == 0 && err == nil: // EOF: the peer's FIN came before its reset
		if r.cutOff(l, c, c.other(d), fd); c.state == stateRelaying {
			d.eof = true
			r.passFINs(l, c)
		}
	case err != nil && err != unix.EAGAIN: // the reset came first; the peek took it
		if c.failed == nil {
			c.failed = os.NewSyscallError("read", err)
		}
		if r.cutOff(l, c, c.other(d), fd); c.state == stateRelaying {
			r.deliverThenEnd(l, c, d)
		}
	default: // bytes the verdict did not take, or no error after all: as before
		failOnError(l, c, fd)
	}
}

// pausedFailed handles an error on fd, the source of paused direction d.
func (r sockmapRelay) pausedFailed(l *loop, c *loopConn, fd int, d *direction) {
	if c.failed == nil || !c.other(d).done {
		// kernelTaken cannot tell whether a socket that reads as closed had its peer's
		// FIN, so a direction paused for back-pressure could not resume: as before, a reset.
		failOnError(l, c, fd)
		return
	}
	// deliverThenEnd paused d after fd's reset. The kernel, failing to deliver into fd what
	// it still had for it, reports that there (EPIPE): the reset is known, and settle ends c
	// once the kernel's bytes from fd are delivered. The error is taken so that the relay's
	// read of fd then finds its end, and c ends with its first cause.
	_ = poll.SocketError(fd, "read")
}

// failOnError ends c with a reset if fd has an error: what the sockmap mover did on every
// error event before it learnt to let a reset peer's last bytes go on.
func failOnError(l *loop, c *loopConn, fd int) {
	if err := poll.SocketError(fd, "read"); err != nil {
		l.finish(c, err, true)
	}
}

// cutOff ends direction o, whose destination dst is no longer connected: nothing more reaches
// its peer. If some of o's bytes did not reach it, the write error dst holds is the failure
// the connection ends with (as the splice relay's fail), once the other direction ends too.
func (r sockmapRelay) cutOff(l *loop, c *loopConn, o *direction, dst int) {
	if o.done {
		return
	}
	if c.failed == nil && !reached(c, o, dst) {
		if c.failed = poll.SocketError(dst, "write"); c.failed == nil {
			c.failed = os.NewSyscallError("write", unix.EPIPE)
		}
	}
	l.endDirection(c, o)
}

// reached reports whether every byte of o that left its source reached the peer of dst, a
// socket that is no longer connected: only what that peer acknowledged did, as what dst
// still held is lost. The relay's part is not counted: it wrote to dst, which took it.
func reached(c *loopConn, o *direction, dst int) bool {
	kd := c.kdir(o)
	if o.queued() {
		return false
	}
	if kd.mode == onRelay {
		return true
	}
	src, _ := c.ends(o)
	taken, ok := kernelTaken(src)
	info, err := poll.TCPInfo(dst)
	return ok && err == nil && int64(info.Bytes_acked)-kd.offset >= taken
}

// deliverThenEnd ends d, whose source was reset before its peer's FIN, once the kernel has
// delivered what it took from that source: d is handed to the relay as a paused direction is
// (settle, resume), and the relay's read of the source, which then finds its end, passes on
// what is left and ends the connection with c.failed (passFIN). The source left the kernel
// maps as it closed, so there is no map entry to delete.
func (r sockmapRelay) deliverThenEnd(l *loop, c *loopConn, d *direction) {
	c.kdir(d).mode = paused
	// The relay's events again (kernelEvents has none of them): settle hears room in the
	// destination, and the relay its writes' progress once the direction is its own.
	if !r.register(l, c, relayEvents) {
		return
	}
	d.readable, d.rdhup = true, true
	c.smap.wait = 0
	r.settle(l, c)
}
