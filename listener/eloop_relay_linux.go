//go:build linux

package listener

import (
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// connected starts relaying once the backend has accepted: the Observer hears of the
// connection, the PROXY prefix goes first, then both directions flow.
func (l *loop) connected(c *loopConn) {
	l.timers.clear(c)
	c.info.Backend = c.backend
	c.state = stateRelaying
	c.meter = c.srv.book.opened(&c.info)
	c.lastActive = l.now
	if idle := c.srv.cfg.IdleTimeout; idle > 0 {
		l.timers.set(c, l.now.Add(idle))
	}
	if err := l.queuePrefix(c); err != nil {
		l.finish(c, err, true)
		return
	}
	l.pump(c, &c.up)
	l.pump(c, &c.down)
}

// relayEvent handles readiness on one socket of a relayed connection: readable feeds the
// direction it is the source of, writable drains the direction it is the destination of.
func (l *loop) relayEvent(c *loopConn, fromClient bool, ev uint32) {
	fd, in, out := c.cfd, &c.up, &c.down
	if !fromClient {
		fd, in, out = c.bfd, &c.down, &c.up
	}
	if ev&unix.EPOLLERR != 0 {
		if err := socketError(fd, "read"); err != nil {
			l.finish(c, err, true)
			return
		}
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
		in.readable = true
		in.rdhup = in.rdhup || ev&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0
		l.pump(c, in)
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP) != 0 && out.queued() {
		l.pump(c, out)
	}
}

// socketError is a socket's pending error (SO_ERROR) as a syscall error of op ("read",
// "connect"), so EndReason and passive health read it as usual; nil if none.
func socketError(fd int, op string) error {
	errno, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && errno != 0 {
		err = syscall.Errno(errno)
	}
	if err != nil {
		return os.NewSyscallError(op, err)
	}
	return nil
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
	n, err := unix.Read(src, l.buf)
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
	w, err := unix.Write(dst, l.buf[:n])
	if err != nil && err != unix.EAGAIN {
		l.finish(c, os.NewSyscallError("write", err), true)
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
		if d.pipe = l.pipes.take(); d.pipe == nil {
			d.bulk = false // no pipe to spare: copy through the buffer
			return
		}
	}
	n, err := unix.Splice(src, nil, d.pipe.w, nil, d.pipe.size, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
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
		w, err := unix.Write(dst, d.pending[d.off:])
		if err == unix.EAGAIN {
			return true
		}
		if err != nil {
			l.finish(c, os.NewSyscallError("write", err), true)
			return false
		}
		c.lastActive = l.now
		if d.off += w; d.off == len(d.pending) {
			d.pending, d.off = nil, 0 // a slow reader's backlog is not kept once written
		}
	}
	for d.inPipe > 0 {
		n, err := unix.Splice(d.pipe.r, nil, dst, nil, d.inPipe, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if err == unix.EAGAIN {
			return true
		}
		if err != nil {
			l.finish(c, os.NewSyscallError("splice", err), true)
			return false
		}
		if n == 0 {
			l.finish(c, fmt.Errorf("splice to socket: %w", io.ErrNoProgress), true)
			return false
		}
		c.lastActive = l.now
		if d.inPipe -= int(n); d.inPipe == 0 {
			l.dropPipe(d)
		}
	}
	return true
}

// moved accounts for n bytes read from d's source.
func (l *loop) moved(c *loopConn, d *direction, n int) {
	d.n += int64(n)
	c.lastActive = l.now
	if c.meter != nil {
		c.meter.Moved(d == &c.up, int64(n))
	}
}

// passFIN ends a direction whose source sent FIN and whose bytes are all delivered: the FIN
// goes on with shutdown(SHUT_WR) while the other direction keeps flowing; once both have
// ended the connection closes.
func (l *loop) passFIN(c *loopConn, d *direction, dst int) {
	d.done = true
	other := &c.down
	if d == &c.down {
		other = &c.up
	}
	if other.done {
		l.finish(c, nil, false) // closing sends this FIN; a shutdown first would cost a syscall
		return
	}
	if err := unix.Shutdown(dst, unix.SHUT_WR); err != nil {
		l.finish(c, os.NewSyscallError("shutdown", err), true)
	}
}
