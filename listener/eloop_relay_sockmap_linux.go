//go:build linux

package listener

import (
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fulcrumlb/fulcrum/listener/internal/poll"
)

// sockmapRelay is the in-kernel byte mover (moverSockmap). A connection starts on the splice
// relay, which it wraps; once it has lived the promotion age (sockmapSettings.after) and
// nothing of it waits in user space, both sockets enter the kernel maps (sockmap_kernel_linux.go)
// and from then on the kernel moves its bytes: the loop only watches for its end.
//
// What the loop still does for a promoted connection:
//   - a FIN (EPOLLRDHUP on its source; the verdict drops the bare FIN) is passed on with
//     shutdown once every byte the source received has reached the destination's send
//     queue or its peer: the kernel's redirects are asynchronous, so the loop compares
//     TCP_INFO and SIOCOUTQ counts, and looks again after a short wait until they agree;
//   - an error on either socket (SO_ERROR) resets both, as on the relay;
//   - every second (kernelLookEvery), and at the close, TCP_INFO's counters feed the byte
//     meters and the idle timeout;
//   - closing a socket takes it out of the maps, so force-remove, drain and shutdown need
//     nothing more than on the relay.
type sockmapRelay struct {
	spliceRelay
	sockmapSettings
}

// sockmapSettings are what the loops of one EventLoops share for moverSockmap.
type sockmapSettings struct {
	kernel *sockmapKernel
	after  time.Duration // the promotion age; negative: at once
}

var _ relay = sockmapRelay{}

func newSockmapRelay(el *EventLoops) relay { return sockmapRelay{sockmapSettings: el.smap} }

// sockmapConn is a promoted connection's state, kept by its loopConn (c.smap); connections
// that never move pay one nil pointer. Its directions' eof and done fields are reused from
// spliceConn: FIN seen on the source, FIN passed on.
type sockmapConn struct {
	up, down kernelDir
	wait     time.Duration // before the next look at a FIN not yet passed on
	acked    [2]uint64     // the client's and the backend's TCP_INFO bytes_acked at the last look
	// upOnRelay: the client could not join the kernel (its FIN came during the promotion);
	// the splice relay moves the up direction, the kernel the down one.
	upOnRelay bool
}

// kernelDir is what the loop knows of one direction moved by the kernel.
type kernelDir struct {
	consumed int64 // bytes user space took from the source before the promotion
	offset   int64 // the destination's bytes sent minus the source's consumed, at the promotion
	metered  int64 // kernel-moved bytes told to the Meter so far
	// ackedStart is the source socket's bytes_acked at the promotion: where look starts
	// counting the bytes its peer acknowledges, for the idle timeout.
	ackedStart uint64
}

// stayOnRelay marks a connection judged unfit for the kernel (a map full, a socket no longer
// ESTABLISHED): it stays on the relay, and is not judged again.
var stayOnRelay = &sockmapConn{}

// promoted reports whether the kernel moves c's bytes.
func promoted(c *loopConn) bool { return c.smap != nil && c.smap != stayOnRelay }

// start implements relay: the connection starts on the splice relay.
func (r sockmapRelay) start(l *loop, c *loopConn, h handoff) {
	r.spliceRelay.start(l, c, h)
	r.judge(l, c)
}

// event implements relay.
func (r sockmapRelay) event(l *loop, c *loopConn, fromClient bool, ev uint32) {
	if !promoted(c) {
		r.spliceRelay.event(l, c, fromClient, ev)
		r.judge(l, c)
		return
	}
	fd, d := c.cfd, &c.up
	if !fromClient {
		fd, d = c.bfd, &c.down
	}
	if ev&unix.EPOLLERR != 0 {
		if err := poll.SocketError(fd, "read"); err != nil {
			l.finish(c, err, true)
			return
		}
	}
	if c.smap.upOnRelay { // the up direction is the splice relay's: its events feed the pump
		if fromClient && ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
			c.up.readable = true
			c.up.rdhup = c.up.rdhup || ev&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0
			l.pump(c, &c.up)
		}
		if !fromClient && ev&(unix.EPOLLOUT|unix.EPOLLHUP) != 0 && c.up.queued() {
			l.pump(c, &c.up)
		}
		if fromClient || c.state != stateRelaying {
			return
		}
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 && !d.eof {
		d.eof = true
		r.passFINs(l, c)
	}
}

// judge promotes c when it is old enough and nothing of it is held in user space; otherwise
// it stays on the relay and is judged again at its next event.
func (r sockmapRelay) judge(l *loop, c *loopConn) {
	if c.state != stateRelaying || c.smap != nil || l.now.Sub(c.info.Start) < r.after {
		return
	}
	// Bytes read but not yet written, or a FIN under way, stay with the relay: the kernel
	// must find every byte still in a socket, and the loop must know the FINs it passed on.
	if c.up.queued() || c.down.queued() || c.up.eof || c.down.eof || c.up.rdhup || c.down.rdhup {
		return
	}
	up, okUp := kernelStart(c.cfd, c.bfd)
	down, okDown := kernelStart(c.bfd, c.cfd)
	if !okUp || !okDown {
		return // a counter moved while read, or a socket is not ESTABLISHED: next event
	}
	cc, err1 := unix.GetsockoptUint64(c.cfd, unix.SOL_SOCKET, unix.SO_COOKIE)
	bc, err2 := unix.GetsockoptUint64(c.bfd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err1 != nil || err2 != nil {
		c.smap = stayOnRelay
		return
	}
	joined, clientOut := r.kernel.insert(c.cfd, c.bfd, cc, bc)
	if !joined {
		c.smap = stayOnRelay
		return
	}
	c.smap = &sockmapConn{up: up, down: down, acked: [2]uint64{up.ackedStart, down.ackedStart}, upOnRelay: clientOut}
	r.kernel.inKernel.Add(1)
	r.kernel.promotions.Add(1)
	c.lastActive = l.now
	if !r.kick(l, c) {
		return
	}
	r.look(l, c)   // sets the first deadline
	if clientOut { // what the client sent, its FIN most likely, goes on from user space
		c.up.readable, c.up.rdhup = true, true
		l.pump(c, &c.up)
	}
}

// kick makes the kernel judge the bytes that reached a socket before it entered the maps:
// they are seen only when more arrive, unless the receive low-water mark is set again,
// which runs the socket's data-ready hook at once.
func (r sockmapRelay) kick(l *loop, c *loopConn) bool {
	for _, fd := range [2]int{c.bfd, c.cfd} {
		if err := poll.SetInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1); err != nil {
			l.finish(c, os.NewSyscallError("setsockopt", err), true)
			return false
		}
	}
	return true
}

// kernelStart reads what one direction, src → dst, has moved when the kernel takes it over:
// src's bytes consumed (received less those still queued) and dst's bytes sent (acknowledged
// plus queued). Each pair of counts is read twice around its queue size, so that a segment
// or an acknowledgement arriving between them cannot skew it; ok is false when one did, or
// when src is not ESTABLISHED (a FIN came: the relay passes it on).
func kernelStart(src, dst int) (kd kernelDir, ok bool) {
	r1, err1 := unix.GetsockoptTCPInfo(src, unix.IPPROTO_TCP, unix.TCP_INFO)
	inq, err2 := unix.IoctlGetInt(src, unix.SIOCINQ)
	r2, err3 := unix.GetsockoptTCPInfo(src, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err1 != nil || err2 != nil || err3 != nil || r1.Bytes_received != r2.Bytes_received ||
		r2.State != unix.BPF_TCP_ESTABLISHED {
		return kernelDir{}, false
	}
	sent, ok := sentBytes(dst)
	if !ok {
		return kernelDir{}, false
	}
	kd.consumed = int64(r2.Bytes_received) - int64(inq)
	kd.offset = sent - kd.consumed
	kd.ackedStart = r2.Bytes_acked
	return kd, true
}

// sentBytes is what dst has been given to send: acknowledged (its SYN included) plus queued.
func sentBytes(dst int) (int64, bool) {
	a1, err1 := unix.GetsockoptTCPInfo(dst, unix.IPPROTO_TCP, unix.TCP_INFO)
	outq, err2 := unix.IoctlGetInt(dst, unix.SIOCOUTQ)
	a2, err3 := unix.GetsockoptTCPInfo(dst, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err1 != nil || err2 != nil || err3 != nil || a1.Bytes_acked != a2.Bytes_acked {
		return 0, false
	}
	return int64(a2.Bytes_acked) + int64(outq), true
}

// passFINs passes on each FIN whose bytes have all been delivered, and looks again after a
// wait (1 ms doubling to 256 ms) while one has not: the kernel moves bytes asynchronously.
func (r sockmapRelay) passFINs(l *loop, c *loopConn) {
	waiting := false
	for _, d := range [2]*direction{&c.up, &c.down} {
		if !d.eof || d.done || c.state != stateRelaying || d == &c.up && c.smap.upOnRelay {
			continue
		}
		if !delivered(c, d) {
			waiting = true
			continue
		}
		_, dst := c.ends(d)
		l.passFIN(c, d, dst)
	}
	if !waiting || c.state != stateRelaying {
		c.smap.wait = 0
		return
	}
	c.smap.wait = min(max(2*c.smap.wait, time.Millisecond), 256*time.Millisecond)
	l.timers.set(c, l.now.Add(c.smap.wait))
}

// delivered reports whether every byte d's source received before its FIN has been given to
// the destination to send (pitfall: passing the FIN earlier would cut the stream short).
func delivered(c *loopConn, d *direction) bool {
	src, dst := c.ends(d)
	kd := &c.smap.up
	if d == &c.down {
		kd = &c.smap.down
	}
	info, err := unix.GetsockoptTCPInfo(src, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return true // the socket failed: its error event ends the connection
	}
	sent, ok := sentBytes(dst)
	return ok && sent >= int64(info.Bytes_received)-1+kd.offset // received counts the FIN
}

// kernelLookEvery is how often the loop reads a promoted connection's TCP_INFO: for the live
// byte meters and the idle timeout (at most this late), which cannot hear of bytes the
// kernel moves. Four system calls a second per promoted connection.
const kernelLookEvery = time.Second

// tick implements relay: a promoted connection's deadline is the loop's, either the next
// look at a FIN waiting for its bytes or the next look at its counters.
func (r sockmapRelay) tick(l *loop, c *loopConn) bool {
	if !promoted(c) {
		return false
	}
	r.look(l, c)
	if c.state == stateRelaying && finWaiting(c) {
		r.passFINs(l, c) // sooner than the look
	}
	return true
}

// finWaiting reports whether a FIN came that is not yet passed on.
func finWaiting(c *loopConn) bool {
	return c.up.eof && !c.up.done && !c.smap.upOnRelay || c.down.eof && !c.down.done
}

// look brings the byte meters up to date, ends c when idle, and sets the next look. Bytes
// move, for the idle timeout, when a destination's peer acknowledges some: a source keeps
// receiving while its destination's reader stalls (the kernel queues what it redirects), so
// received bytes would keep a stalled connection alive.
func (r sockmapRelay) look(l *loop, c *loopConn) {
	ci, err1 := unix.GetsockoptTCPInfo(c.cfd, unix.IPPROTO_TCP, unix.TCP_INFO)
	bi, err2 := unix.GetsockoptTCPInfo(c.bfd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err1 == nil && err2 == nil {
		meterKernel(c, ci, bi, false)
		if acked := [2]uint64{ci.Bytes_acked, bi.Bytes_acked}; acked != c.smap.acked {
			c.smap.acked = acked
			c.lastActive = l.now
		}
	}
	idle := c.srv.cfg.IdleTimeout
	if idle > 0 && l.now.Sub(c.lastActive) >= idle {
		l.finish(c, ErrIdle, true)
		return
	}
	next := l.now.Add(kernelLookEvery)
	if idle > 0 && c.lastActive.Add(idle).Before(next) {
		next = c.lastActive.Add(idle)
	}
	l.timers.set(c, next)
}

// The kernel has no back-pressure on a redirect: a source keeps receiving (its window stays
// open) while the redirects to its destination wait, so what a fast source sends beyond what
// its destination drains is queued in kernel memory (measured on 6.18: about 1 GB a second
// behind a client that never reads, and hundreds of MB in a bulk upload whose sink reads at
// full speed). A bound that resets the connection broke bulk transfers; pausing the source
// (taking it out of the watch map) and relaying a paused direction's tail in user space is
// the way out, not done yet.

// progressed implements relay. A promoted connection's idle timeout is judged by look, which
// its deadline reaches through tick; the loop asks only connections on the relay.
func (r sockmapRelay) progressed(c *loopConn) bool {
	if !promoted(c) {
		return r.spliceRelay.progressed(c)
	}
	return true
}

// stop implements relay: a promoted connection's counts are the relay's before the promotion
// plus what its sources received since, less their FINs.
func (r sockmapRelay) stop(l *loop, c *loopConn) (up, down int64) {
	if !promoted(c) {
		c.smap = nil
		return r.spliceRelay.stop(l, c)
	}
	ci, err1 := unix.GetsockoptTCPInfo(c.cfd, unix.IPPROTO_TCP, unix.TCP_INFO)
	bi, err2 := unix.GetsockoptTCPInfo(c.bfd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err1 == nil && err2 == nil {
		meterKernel(c, ci, bi, true)
	}
	up, down = r.spliceRelay.stop(l, c)
	up += c.smap.up.metered
	down += c.smap.down.metered
	c.smap = nil
	r.kernel.inKernel.Add(-1)
	return up, down
}

// meterKernel tells the Meter what the kernel moved each way since it was last told.
func meterKernel(c *loopConn, ci, bi *unix.TCPInfo, final bool) {
	for _, m := range [2]struct {
		kd  *kernelDir
		d   *direction
		src *unix.TCPInfo
	}{{&c.smap.up, &c.up, ci}, {&c.smap.down, &c.down, bi}} {
		if m.d == &c.up && c.smap.upOnRelay {
			continue // the relay counts and meters it
		}
		moved := int64(m.src.Bytes_received) - finReceived(m.d, m.src, final) - m.kd.consumed
		if moved <= m.kd.metered {
			continue
		}
		if c.meter != nil {
			c.meter.Moved(m.d == &c.up, moved-m.kd.metered)
		}
		m.kd.metered = moved
	}
}

// finReceived is 1 when d's source has had its peer's FIN, which TCP_INFO counts as a byte
// received: the loop saw it, or the socket's state says so. A socket that has had both
// FINs, or a reset, reads as closed: the live count (final false) then holds one byte back,
// which the count at the close, after the loop has seen the FIN's event, settles.
func finReceived(d *direction, info *unix.TCPInfo, final bool) int64 {
	if d.eof {
		return 1
	}
	switch info.State {
	case unix.BPF_TCP_CLOSE_WAIT, unix.BPF_TCP_LAST_ACK, unix.BPF_TCP_CLOSING, unix.BPF_TCP_TIME_WAIT:
		return 1
	case unix.BPF_TCP_CLOSE:
		if !final {
			return 1
		}
	}
	return 0
}
