//go:build linux

package listener

import (
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

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
//   - an error on either socket ends the connection as on the relay, once what its peer
//     sent before the error has gone on (eloop_relay_sockmap_error_linux.go);
//   - every second (kernelLookEvery), and at the close, TCP_INFO's counters feed the byte
//     meters and the idle timeout;
//   - back-pressure (pause, below): a direction whose destination has stopped reading is
//     taken out of the kernel once the kernel holds pauseAfter of its bytes, and the
//     splice relay moves it from then on, under TCP flow control;
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
	wait     span          // before the next look at a FIN not yet passed on or a paused direction
	every    span          // between looks: short while a destination lags (pressureLook)
	acked    uint64        // the client's plus the backend's TCP_INFO bytes_acked at the last look (either moves it)
	received [2]uint32     // the low half of their bytes_received at the last look: whether it moved
	metered  time.Duration // when look last told the Meter what the kernel moved (clock)
}

// span is a short duration in microseconds (up to 71 minutes), half a time.Duration's size
// in the state every promoted connection keeps: the mover's waits are at most a second.
type span uint32

func spanOf(d time.Duration) span { return span(d / time.Microsecond) }
func (s span) dur() time.Duration { return time.Duration(s) * time.Microsecond }

// kernelDir is what the loop knows of one direction moved by the kernel.
type kernelDir struct {
	consumed int64   // bytes user space took from the source before the promotion
	offset   int64   // the destination's bytes sent minus the source's consumed, at the promotion
	metered  int64   // kernel-moved bytes told to the Meter so far
	mode     dirMode // who moves the direction now
	// progress is a count of the destination's last seen to change, at progressAt (clock;
	// 0: not yet seen). While the kernel moves the direction it is bytes_acked: a peer that
	// acknowledges nothing for stallAfter has stopped reading (pressure). While the direction
	// is paused it is bytes sent: nothing more sent with an empty send queue means the kernel
	// lost bytes (lost). One pair serves both, as a direction is in one mode at a time.
	progress   int64
	progressAt time.Duration
}

// dirMode says who moves one direction of a promoted connection. It only moves forward:
// inKernel, then paused, then onRelay; a direction never goes back into the kernel.
type dirMode uint8

const (
	// inKernel: the source is in the watch map and the verdict redirects its bytes.
	inKernel dirMode = iota
	// paused: the source left the watch map (back-pressure, pause); its new bytes wait in its
	// receive queue under TCP flow control while what the kernel took drains into the
	// destination. Nothing reads the source yet: a read now would overtake those bytes.
	paused
	// onRelay: the splice relay moves the direction, as before the promotion. A client that
	// could not join the kernel (its FIN came during the promotion) starts there.
	onRelay
)

// kdir is the kernel's side of direction d.
func (c *loopConn) kdir(d *direction) *kernelDir {
	if d == &c.up {
		return &c.smap.up
	}
	return &c.smap.down
}

// stayOnRelay marks a connection judged unfit for the kernel (a map full, a socket no longer
// ESTABLISHED): it stays on the relay, and is not judged again.
var stayOnRelay = &sockmapConn{}

// promoted reports whether the kernel moves c's bytes.
func promoted(c *loopConn) bool { return c.smap != nil && c.smap != stayOnRelay }

// start implements relay: the connection starts on the splice relay, and is judged at its
// events and once more when it reaches the promotion age, so that one gone quiet by then
// (an idle pool connection, a stream between messages) moves too. The age shares the idle
// timeout's place in the timer heap: tick judges, then sets the idle deadline again.
func (r sockmapRelay) start(l *loop, c *loopConn, h handoff) {
	r.spliceRelay.start(l, c, h)
	r.judge(l, c)
	if c.state != stateRelaying || c.smap != nil {
		return
	}
	l.timers.setSooner(c, c.info.Start.Add(r.after))
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
		if r.socketFailed(l, c, fd, d); c.state != stateRelaying {
			return
		}
	}
	r.sourceEvent(l, c, d, ev)
	if c.state == stateRelaying {
		r.destinationEvent(l, c, c.other(d), ev)
	}
}

// sourceEvent handles readiness on the source of d: a FIN for the kernel's directions, bytes
// to read for the relay's.
func (r sockmapRelay) sourceEvent(l *loop, c *loopConn, d *direction, ev uint32) {
	hup := ev&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0
	switch c.kdir(d).mode {
	case inKernel:
		if hup && !d.eof {
			d.eof = true
			r.passFINs(l, c)
		}
	case paused: // remembered for the relay, which reads once the kernel's bytes are out
		if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
			d.readable = true
			d.rdhup = d.rdhup || hup
		}
	case onRelay:
		if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
			d.readable = true
			d.rdhup = d.rdhup || hup
			l.pump(c, d)
		}
	}
}

// destinationEvent handles writability on the destination of d: room for the relay's
// bytes, or for those the kernel still holds of a paused direction.
func (r sockmapRelay) destinationEvent(l *loop, c *loopConn, d *direction, ev uint32) {
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP) == 0 {
		return
	}
	switch c.kdir(d).mode {
	case paused:
		r.settle(l, c)
	case onRelay:
		if d.queued() {
			l.pump(c, d)
		}
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
	// Bulk stays on the relay, but not when every connection is to move at once (0, for
	// measuring): a client streaming from its first moment, whose first judge found a
	// counter moving, would otherwise never move. It is judged again at its next event, or
	// by tick once it could be judged otherwise: a send queue that drains gives no event
	// unless a write had filled it.
	if r.after >= 0 {
		if until := bulkUntil(c); l.now.Before(until) {
			l.timers.setSooner(c, until)
			return
		}
		if backedUp(c.cfd) || backedUp(c.bfd) {
			l.timers.setSooner(c, l.now.Add(rejudgeAfter))
			return
		}
	}
	up, ackedUp, okUp := kernelStart(c.cfd, c.bfd)
	down, ackedDown, okDown := kernelStart(c.bfd, c.cfd)
	if !okUp || !okDown {
		return // a counter moved while read, or a socket is not ESTABLISHED: next event
	}
	cc, err1 := unix.GetsockoptUint64(c.cfd, unix.SOL_SOCKET, unix.SO_COOKIE)
	bc, err2 := unix.GetsockoptUint64(c.bfd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err1 != nil || err2 != nil {
		c.smap = stayOnRelay
		return
	}
	l.entry = mapPair{client: cc, backend: bc, cfd: uint64(c.cfd), bfd: uint64(c.bfd)}
	joined, clientOut := r.kernel.insert(&l.entry)
	if !joined {
		c.smap = stayOnRelay
		return
	}
	if clientOut {
		up.mode = onRelay
	}
	c.smap = &sockmapConn{up: up, down: down, acked: ackedUp + ackedDown}
	r.kernel.inKernel.Add(1)
	r.kernel.promotions.Add(1)
	c.lastActive = clock(l.now)
	if !r.kick(l, c) {
		return
	}
	if !clientOut && !r.register(l, c, kernelEvents) {
		return
	}
	r.look(l, c)   // sets the first deadline
	if clientOut { // what the client sent, its FIN most likely, goes on from user space
		c.up.readable, c.up.rdhup = true, true
		l.pump(c, &c.up)
	}
}

// bulkRate is the relay's average rate, both ways, above which a connection counts as a bulk
// transfer and stays on the relay (judge): ten times what a busy request/response connection
// moves (64-byte messages at 20,000 round trips a second are 2.6 MB/s), a tenth of what one
// bulk connection moves here.
const bulkRate = 32 << 20 // bytes a second

// bulkUntil is when c's average on the relay since it started falls to bulkRate if it moves
// nothing more: until then it is a bulk transfer (the relay's last read alone says too
// little: a 16 KiB answer fills its buffer). Such a connection gains least from the kernel,
// which would queue what its sender sends without flow control (pause).
func bulkUntil(c *loopConn) time.Time {
	return c.info.Start.Add(time.Duration(float64(c.up.n+c.down.n) / bulkRate * float64(time.Second)))
}

// backedUp reports whether fd's send queue holds more than lagBytes: its peer reads slower
// than fulcrum writes, as behind a bulk transfer. Such a connection stays on the relay, where
// TCP flow control holds the sender back: the kernel's redirects have none, and would queue
// the sender's bytes until the back-pressure look paused the direction (pause). An error
// counts as backed up; its event ends the connection.
func backedUp(fd int) bool {
	n, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	return err != nil || n > lagBytes
}

// rejudgeAfter is how soon a connection old enough for the kernel, but left on the relay
// because a send queue was backed up, is judged again when no event comes first.
const rejudgeAfter = 10 * time.Millisecond

// kernelEvents is what the loop hears of a connection whose directions the kernel both
// moves: its ends (EPOLLRDHUP, and the EPOLLERR and EPOLLHUP epoll always reports). With
// relayEvents the loop would wake for every acknowledgement that frees room in a send queue
// the kernel fills: one wake-up per request on each socket, and most of the loop's work.
const kernelEvents = unix.EPOLLRDHUP | unix.EPOLLET

// register sets what epoll reports of both of c's sockets; a failure ends c.
func (r sockmapRelay) register(l *loop, c *loopConn, events uint32) bool {
	for _, fd := range [2]int{c.cfd, c.bfd} {
		if err := l.set.Modify(fd, events); err != nil {
			l.finish(c, err, true)
			return false
		}
	}
	return true
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
// when src is not ESTABLISHED (a FIN came: the relay passes it on). acked is src's
// bytes_acked: where look starts counting what its peer acknowledges, for the idle timeout.
func kernelStart(src, dst int) (kd kernelDir, acked uint64, ok bool) {
	r1, err1 := poll.TCPInfo(src)
	inq, err2 := unix.IoctlGetInt(src, unix.SIOCINQ)
	r2, err3 := poll.TCPInfo(src)
	if err1 != nil || err2 != nil || err3 != nil || r1.Bytes_received != r2.Bytes_received ||
		r2.State != unix.BPF_TCP_ESTABLISHED {
		return kernelDir{}, 0, false
	}
	sent, ok := sentBytes(dst)
	if !ok {
		return kernelDir{}, 0, false
	}
	kd.consumed = int64(r2.Bytes_received) - int64(inq)
	kd.offset = sent - kd.consumed
	return kd, r2.Bytes_acked, true
}

// sentBytes is what dst has been given to send: acknowledged (its SYN included) plus queued.
func sentBytes(dst int) (int64, bool) {
	a1, err1 := poll.TCPInfo(dst)
	outq, err2 := unix.IoctlGetInt(dst, unix.SIOCOUTQ)
	a2, err3 := poll.TCPInfo(dst)
	if err1 != nil || err2 != nil || err3 != nil || a1.Bytes_acked != a2.Bytes_acked {
		return 0, false
	}
	return int64(a2.Bytes_acked) + int64(outq), true
}

// passFINs passes on each FIN whose bytes have all been delivered; settle looks again while
// one has not.
func (r sockmapRelay) passFINs(l *loop, c *loopConn) { r.settle(l, c) }

// settle does what waits for the kernel to deliver the bytes it took: it passes on each FIN
// whose bytes are delivered, and hands each paused direction whose bytes are delivered to
// the relay. While something still waits it looks again after a wait (1 ms doubling to
// 256 ms, or 16 ms while a direction is paused): the kernel moves bytes asynchronously and says nothing when it is done.
func (r sockmapRelay) settle(l *loop, c *loopConn) {
	waiting := false
	for _, d := range [2]*direction{&c.up, &c.down} {
		if c.state != stateRelaying {
			return
		}
		switch kd := c.kdir(d); {
		case kd.mode == paused:
			waiting = !r.resume(l, c, d) || waiting
		case kd.mode == inKernel && d.eof && !d.done:
			if !delivered(c, d) {
				waiting = true
				continue
			}
			_, dst := c.ends(d)
			l.passFIN(c, d, dst)
		}
	}
	if c.state != stateRelaying {
		return // the last FIN ended c, and stop let go of c.smap
	}
	if !waiting {
		c.smap.wait = 0
		return
	}
	c.smap.wait = spanOf(min(max(2*c.smap.wait.dur(), time.Millisecond), settleWaitMax(c)))
	l.timers.setSooner(c, l.now.Add(c.smap.wait.dur()))
}

// delivered reports whether every byte d's source received before its FIN has been given to
// the destination to send (pitfall: passing the FIN earlier would cut the stream short).
func delivered(c *loopConn, d *direction) bool {
	src, dst := c.ends(d)
	info, err := poll.TCPInfo(src)
	if err != nil {
		return true // the socket failed: its error event ends the connection
	}
	sent, ok := sentBytes(dst)
	return ok && sent >= int64(info.Bytes_received)-1+c.kdir(d).offset // received counts the FIN
}

// kernelLookEvery is how often the loop reads a promoted connection's TCP_INFO: for the live
// byte meters and the idle timeout (at most this late), which cannot hear of bytes the
// kernel moves. Four system calls a second per promoted connection, two more per direction
// whose count moved (finUnseen).
const kernelLookEvery = time.Second

// tick implements relay: a promoted connection's deadline is the loop's, either the next
// look at a FIN waiting for its bytes or the next look at its counters. A connection still
// on the relay is judged again (judge woke it while a send queue was backed up); the
// relay's idle timeout is then looked at as for the epoll plane.
func (r sockmapRelay) tick(l *loop, c *loopConn) bool {
	if !promoted(c) {
		r.judge(l, c) // one that was backed up; the relay's idle timeout is looked at after
		return promoted(c) || c.state != stateRelaying
	}
	r.look(l, c)
	if c.state == stateRelaying && settling(c) {
		r.settle(l, c) // sooner than the look
	}
	return true
}

// settleWaitMax is the longest wait between two looks of settle: a paused direction's
// sender is stopped until it resumes, so it is looked at more often than a FIN.
func settleWaitMax(c *loopConn) time.Duration {
	if c.smap.up.mode == paused || c.smap.down.mode == paused {
		return 16 * time.Millisecond
	}
	return 256 * time.Millisecond
}

// settling reports whether a FIN came that is not yet passed on, or a paused direction waits
// for the kernel's bytes to be delivered.
func settling(c *loopConn) bool {
	for _, d := range [2]*direction{&c.up, &c.down} {
		switch kd := c.kdir(d); kd.mode {
		case paused:
			return true
		case inKernel:
			if d.eof && !d.done {
				return true
			}
		}
	}
	return false
}

// look brings the byte meters up to date, ends c when idle, and sets the next look. Bytes
// move, for the idle timeout, when a destination's peer acknowledges some: a source keeps
// receiving while its destination's reader stalls (the kernel queues what it redirects), so
// received bytes would keep a stalled connection alive.
func (r sockmapRelay) look(l *loop, c *loopConn) {
	ci, err1 := poll.TCPInfo(c.cfd)
	bi, err2 := poll.TCPInfo(c.bfd)
	lagging := false
	if err1 == nil && err2 == nil {
		if clock(l.now)-c.smap.metered >= kernelLookEvery { // the live meters, as before back-pressure
			meterKernel(c, &ci, &bi, false)
			c.smap.metered = clock(l.now)
		}
		if acked := ci.Bytes_acked + bi.Bytes_acked; acked != c.smap.acked {
			c.smap.acked = acked
			c.lastActive = clock(l.now)
		}
		if lagging = r.pressure(l, c, &ci, &bi); c.state != stateRelaying {
			return
		}
	}
	idle := c.srv.cfg.IdleTimeout
	if idle > 0 && clock(l.now)-c.lastActive >= idle {
		l.finish(c, ErrIdle, true)
		return
	}
	if lagging {
		c.smap.every = spanOf(pressureLook)
	} else {
		c.smap.every = spanOf(min(max(2*c.smap.every.dur(), pressureLook), kernelLookEvery))
	}
	next := l.now.Add(c.smap.every.dur())
	if at := clockTime(c.lastActive + idle); idle > 0 && at.Before(next) {
		next = at
	}
	l.timers.set(c, next)
}

// Back-pressure. The kernel gives a redirect none: the verdict takes every byte off the
// source as it arrives (its window stays open) and queues it for the destination, however
// far behind the destination is (measured on 6.18: 300 MB to 1 GB a second behind a reader
// that stopped). So the loop watches how far behind each destination is, and when the kernel
// holds more than pauseAfter bytes for a destination whose peer has acknowledged nothing for
// stallAfter (its reader stopped), it pauses the direction: its source leaves the watch map,
// so its verdict stops and its new bytes stay in its own receive queue, whose window closes
// as it fills, and TCP stops the sender. The source stays in the peers map, so the other
// direction's redirects into it go on. Once every byte the kernel took is in the
// destination's send queue (settle, resume), the splice relay moves the direction, reading
// first what waited in the receive queue. It stays there: moving it back would pay the
// promotion again, and a destination that stalled once is likely to again.
//
// A destination that keeps reading is never paused, however far behind: the kernel on 6.18
// has no safe way to stop a socket that is receiving. Taking it out of the watch map clears
// its verdict program while its data-ready hook may be judging a segment on the other CPU,
// which then drops it (under a bulk load, one 64 KiB segment in about one pause in a
// hundred: the bytes the kernel took never all reach the destination, and lost resets the
// connection). Keeping it in the map with a verdict that passes its bytes to the
// socket itself duplicated a segment when that queue was read in pieces (15 of 240
// connections under the same load). Pausing only a stalled destination keeps that risk
// away from every transfer that is still moving (bench/EXPERIMENTS.md).
const (
	// pauseAfter is how many bytes the kernel may hold for a stalled destination (beyond
	// its send buffer) before the direction is paused: about one more send buffer
	// (tcp_wmem's default top is 4 MiB), so a paused direction costs the kernel about what
	// a slow reader costs the relay.
	pauseAfter = 4 << 20
	// stallAfter is how long a destination's peer must acknowledge nothing before its
	// direction counts as stalled: long enough that a reader descheduled on a loaded
	// machine is not taken for one that stopped, short enough that the kernel takes at
	// most 20 MB more at 1 GB a second.
	stallAfter = 20 * time.Millisecond
	// pressureLook is how often look runs while a destination lags and its source sends.
	// A quiet connection is looked at less often, doubling up to kernelLookEvery, so a
	// connection pays the short look only while it lags; the price is that a sender that
	// bursts into a stalled destination after a quiet spell can have the kernel queue what
	// it sends until the next look (at most kernelLookEvery away).
	pressureLook = 2 * time.Millisecond
	// lagBytes is how much a destination's send queue may hold, with the kernel holding
	// nothing more, before its direction counts as lagging: more than a request or an answer
	// in flight, so request/response traffic keeps the slow look (each look is four system
	// calls), while a bulk transfer that fills the queue gets the short one.
	lagBytes = 64 << 10
)

// pressure pauses each kernel direction whose destination has stalled with more than
// pauseAfter held for it, and reports whether a destination lags while its source sends
// (look soon again).
func (r sockmapRelay) pressure(l *loop, c *loopConn, ci, bi *unix.TCPInfo) (lagging bool) {
	received := [2]uint32{uint32(ci.Bytes_received), uint32(bi.Bytes_received)}
	defer func() {
		if c.state == stateRelaying { // a failed pause let go of c.smap
			c.smap.received = received
		}
	}()
	for i, m := range [2]struct {
		d        *direction
		src, dst *unix.TCPInfo
	}{{&c.up, ci, bi}, {&c.down, bi, ci}} {
		kd := c.kdir(m.d)
		if kd.mode != inKernel || m.d.eof {
			continue // a source that sent its FIN sends no more
		}
		_, dst := c.ends(m.d)
		outq, err := unix.IoctlGetInt(dst, unix.SIOCOUTQ)
		if err != nil {
			continue // the socket failed: its error event ends the connection
		}
		// What the kernel took off the source (its receive queue is all but empty while the
		// verdict runs) less what it has given the destination.
		held := int64(m.src.Bytes_received) - finReceived(m.d, m.src, false) + kd.offset -
			(int64(m.dst.Bytes_acked) + int64(outq))
		if a := int64(m.dst.Bytes_acked); a != kd.progress || kd.progressAt == 0 {
			kd.progress, kd.progressAt = a, clock(l.now)
		}
		if held > pauseAfter && clock(l.now)-kd.progressAt >= stallAfter {
			r.pause(l, c, m.d)
			if c.state != stateRelaying {
				return false
			}
			continue
		}
		lagging = lagging || (held > 0 || outq > lagBytes) && received[i] != c.smap.received[i]
	}
	return lagging
}

// pause takes d's source out of the watch map and hands d to the relay as soon as the kernel
// has delivered what it took.
func (r sockmapRelay) pause(l *loop, c *loopConn, d *direction) {
	kd := c.kdir(d)
	src, _ := c.ends(d)
	cookie, err := unix.GetsockoptUint64(src, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err == nil {
		l.entry.client = cookie // the key, read in place
		err = r.kernel.watch.Delete(unsafe.Pointer(&l.entry.client))
	}
	if err != nil {
		l.finish(c, fmt.Errorf("sockmap: take a socket out of the kernel: %w", err), true)
		return
	}
	kd.mode = paused
	kd.progressAt = 0 // progress counts bytes sent from now on (lost)
	r.kernel.paused.Add(1)
	// The relay's events again: settle hears room in the destination, and the relay the
	// source's bytes once the direction is its own. Modify reports what is ready already.
	if !r.register(l, c, relayEvents) {
		return
	}
	c.smap.wait = 0
	r.settle(l, c)
}

// resume hands paused direction d to the relay once every byte the kernel took from its
// source is in its destination's send queue (or acknowledged), and reports whether it did.
// Before that, reading the source would overtake the bytes still in the kernel.
func (r sockmapRelay) resume(l *loop, c *loopConn, d *direction) bool {
	src, dst := c.ends(d)
	taken, ok1 := kernelTaken(src)
	sent, ok2 := sentBytes(dst)
	if !ok1 || !ok2 {
		return false
	}
	if sent-c.kdir(d).offset < taken {
		if r.lost(l, c.kdir(d), sent, dst) {
			l.finish(c, errKernelDropped, true)
		}
		return false
	}
	meterTaken(c, d, taken)
	c.kdir(d).mode = onRelay
	d.readable = true // what arrived while paused gave its edge already
	l.pump(c, d)
	return true
}

// errKernelDropped ends a connection whose paused direction lost bytes in the kernel (see
// pause): a stream with a hole must not go on, so both sides are reset.
var errKernelDropped = errors.New("sockmap: the kernel dropped bytes of a paused direction")

// lostAfter is how long a paused direction may fall short of what the kernel took, with its
// destination's send queue empty and nothing more sent, before the loop holds those bytes
// lost. The kernel sends what it holds for a socket with room within a few milliseconds.
const lostAfter = time.Second

// lost reports whether the bytes the kernel took for paused direction kd, which reach sent
// bytes at dst so far, will never all arrive: nothing more was sent for lostAfter while dst's
// send queue stood empty. A queue that holds bytes means a slow peer, not a loss.
func (r sockmapRelay) lost(l *loop, kd *kernelDir, sent int64, dst int) bool {
	outq, err := unix.IoctlGetInt(dst, unix.SIOCOUTQ)
	if sent != kd.progress || kd.progressAt == 0 || err != nil || outq > 0 {
		kd.progress, kd.progressAt = sent, clock(l.now)
		return false
	}
	return clock(l.now)-kd.progressAt >= lostAfter
}

// kernelTaken is how many bytes the kernel has taken off src, which has left the watch map:
// its bytes received, less its peer's FIN, less what waits in its receive queue. It reads
// bytes_received twice around the queue's size, so that a segment arriving in between
// cannot skew it; ok is false when one did. SIOCINQ cannot give the queue's size here: on
// a socket in a BPF socket map it counts only the map's own ingress queue.
func kernelTaken(src int) (taken int64, ok bool) {
	r1, err1 := poll.TCPInfo(src)
	queued, err2 := receiveQueued(src)
	r2, err3 := poll.TCPInfo(src)
	if err1 != nil || err2 != nil || err3 != nil || r1.Bytes_received != r2.Bytes_received {
		return 0, false
	}
	fin := int64(0)
	if hadFIN(r2.State) {
		fin = 1
	}
	return int64(r2.Bytes_received) - fin - queued, true
}

// receiveQueued counts the bytes in fd's receive queue without reading them: a peek that
// copies nothing (MSG_TRUNC) into a window as large as any receive queue.
func receiveQueued(fd int) (int64, error) {
	n, err := peek(fd, 1<<30)
	switch {
	case err == unix.EAGAIN:
		return 0, nil
	case err != nil:
		return 0, os.NewSyscallError("recvfrom", err)
	}
	return int64(n), nil
}

// peek looks at up to window bytes of fd's receive queue without copying or taking them
// (MSG_TRUNC): n is how many there are, 0 at the peer's FIN; err is EAGAIN when there are
// none yet, or the socket's error, which the peek takes.
func peek(fd int, window uintptr) (n int, err error) {
	r, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), 0, window,
		unix.MSG_PEEK|unix.MSG_TRUNC|unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// meterTaken tells the Meter the last of what the kernel moved of d, taken bytes off its
// source in all: from then on the relay meters d.
func meterTaken(c *loopConn, d *direction, taken int64) {
	meterTo(c, d, taken-c.kdir(d).consumed)
}

// meterTo tells the Meter of d's bytes up to moved in all, of which it has heard
// kdir(d).metered; a meter never hears a count go back.
func meterTo(c *loopConn, d *direction, moved int64) {
	kd := c.kdir(d)
	if moved <= kd.metered {
		return
	}
	if c.meter != nil {
		c.meter.Moved(d == &c.up, moved-kd.metered)
	}
	kd.metered = moved
}

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
	ci, err1 := poll.TCPInfo(c.cfd)
	bi, err2 := poll.TCPInfo(c.bfd)
	if err1 == nil && err2 == nil {
		meterKernel(c, &ci, &bi, true)
	}
	for _, d := range [2]*direction{&c.up, &c.down} {
		if c.kdir(d).mode == paused {
			src, _ := c.ends(d)
			if taken, ok := kernelTaken(src); ok {
				meterTaken(c, d, taken)
			}
		}
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
		d   *direction
		src *unix.TCPInfo
	}{{&c.up, ci}, {&c.down, bi}} {
		kd := c.kdir(m.d)
		if kd.mode != inKernel {
			continue // the relay counts and meters it; settle metered the kernel's part
		}
		moved := int64(m.src.Bytes_received) - finReceived(m.d, m.src, final) - kd.consumed
		if moved > kd.metered && !final && finUnseen(c, m.d, m.src) {
			moved-- // the FIN may be among the bytes; the count at the close settles it
		}
		meterTo(c, m.d, moved)
	}
}

// finUnseen reports whether the source of d may have counted its peer's FIN in info's bytes
// received although info's state says no FIN came: TCP_INFO loads the state before it
// reads the counters, so a FIN landing in between is counted with a stale state, and a
// meter cannot give a byte back. A second read settles it: the FIN's segment changes the
// state and the counters together, so a state unchanged when read again (after the first
// read's counters) means those counters hold no FIN.
func finUnseen(c *loopConn, d *direction, info *unix.TCPInfo) bool {
	if finReceived(d, info, false) == 1 {
		return false // counted as the FIN already
	}
	src, _ := c.ends(d)
	again, err := poll.TCPInfo(src)
	return err != nil || again.State != info.State
}

// finReceived is 1 when d's source has had its peer's FIN, which TCP_INFO counts as a byte
// received: the loop saw it, or the socket's state says so. A socket that has had both
// FINs, or a reset, reads as closed: the live count (final false) then holds one byte back,
// which the count at the close, after the loop has seen the FIN's event, settles.
func finReceived(d *direction, info *unix.TCPInfo, final bool) int64 {
	if d.eof || hadFIN(info.State) || info.State == unix.BPF_TCP_CLOSE && !final {
		return 1
	}
	return 0
}

// hadFIN reports whether a socket in TCP state has had its peer's FIN.
func hadFIN(state uint8) bool {
	switch state {
	case unix.BPF_TCP_CLOSE_WAIT, unix.BPF_TCP_LAST_ACK, unix.BPF_TCP_CLOSING, unix.BPF_TCP_TIME_WAIT:
		return true
	}
	return false
}
