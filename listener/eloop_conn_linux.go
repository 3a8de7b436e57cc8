//go:build linux

package listener

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fulcrumlb/fulcrum/listener/clientlimit"
	"github.com/fulcrumlb/fulcrum/listener/internal/poll"
	"github.com/fulcrumlb/fulcrum/pool"
)

// loopConn is one client connection in an event loop, from accept to close: both sockets, the
// backend it counts on, and the state of each direction. Only its loop touches it.
type loopConn struct {
	srv        *loopServer // the Server whose listener accepted it: its settings and counters
	cfd, bfd   int         // client and backend descriptors; -1 when not open
	state      connState
	hdrEOF     bool
	pinned     bool // a goroutine (a queued wait, a name lookup) holds it: never reused
	info       ConnInfo
	backend    *pool.Backend // counted on the Picker while non-nil; released exactly once
	tried      []*pool.Backend
	meter      Meter
	meters     meterSet           // the Observers' meters, when meter is more than one (connBook.openedInto)
	spliceConn                    // the relay's state (eloop_relay_splice_linux.go)
	smap       *sockmapConn       // the sockmap mover's state once it judged c; nil until then
	rest       []byte             // client bytes read past an inbound PROXY header, for the backend
	ticket     clientlimit.Ticket // the per-client bounds' claim, released by finish
	hdr        []byte             // inbound PROXY header bytes read so far

	deadline   time.Duration // of the current state (clock); see timerHeap
	timerIndex int
	lastActive time.Duration // the last time a byte moved either way (clock)

	cancel context.CancelFunc // ends a queued wait or a name lookup for this connection
	token  uint32             // tells a waiter's result for the current wait from a stale one
	seen   uint32             // readiness of the client socket before relaying, for the relay

	prev, next *loopConn // the loop's connList

	home      *loop     // the loop that owns it, whose connCache it goes back to
	cacheNext *loopConn // the connCache's lists
}

type connState uint8

const (
	stateHeader     connState = iota // reading an inbound PROXY header
	stateQueued                      // every backend full: waiting for a slot
	stateResolving                   // looking up the backend's name, off the loop
	stateConnecting                  // non-blocking connect in progress
	stateRelaying                    // moving bytes
	stateClosed
)

// connList is a loop's set of connections, linked through the connections themselves so that
// tracking one costs no allocation.
type connList struct {
	head *loopConn
}

func (cl *connList) add(c *loopConn) {
	c.next = cl.head
	if cl.head != nil {
		cl.head.prev = c
	}
	cl.head = c
}

func (cl *connList) remove(c *loopConn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else if cl.head == c {
		cl.head = c.next
	} else {
		return // not in the list
	}
	if c.next != nil {
		c.next.prev = c.prev
	}
	c.prev, c.next = nil, nil
}

// each calls f for every connection; f may finish the one it is given.
func (cl *connList) each(f func(c *loopConn)) {
	for c := cl.head; c != nil; {
		next := c.next
		f(c)
		c = next
	}
}

// connEvent handles an event on one of c's sockets.
func (l *loop) connEvent(c *loopConn, fromClient bool, ev uint32) {
	defer l.recoverConn(c)
	if fromClient && c.state != stateRelaying {
		c.seen |= ev // remember the edge for when relaying starts: it will not come again
	}
	switch c.state {
	case stateHeader:
		if fromClient {
			l.readHeader(c)
		}
	case stateConnecting:
		if !fromClient && ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			l.connectDone(c, ev)
		}
	case stateRelaying:
		l.relay.event(l, c, fromClient, ev)
	}
}

// connTimeout handles c's deadline, which has passed.
func (l *loop) connTimeout(c *loopConn) {
	defer l.recoverConn(c)
	switch c.state {
	case stateHeader:
		l.judgeHeader(c, true)
	case stateResolving, stateConnecting:
		l.dialFailed(c, fmt.Errorf("dial %s: %w", c.backend.DialAddress(), errConnectTimeout))
	case stateRelaying:
		if l.relay.tick(l, c) {
			return
		}
		idle := c.srv.cfg.IdleTimeout
		if idle <= 0 {
			return // a deadline of an earlier state: nothing to time now
		}
		if clock(l.now)-c.lastActive >= idle {
			if !l.relay.progressed(c) {
				l.finish(c, ErrIdle, true)
				return
			}
			c.lastActive = clock(l.now)
		}
		l.timers.setSooner(c, clockTime(c.lastActive+idle)) // tick may have asked for sooner
	}
}

// errConnectTimeout is a dial that took longer than the connect timeout: a timeout, as a
// net.Error, like the goroutine plane's.
var errConnectTimeout = &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}

// recoverConn keeps a bug in one connection from stopping the loop: it logs the panic and
// resets the connection, which gives its backend count back.
func (l *loop) recoverConn(c *loopConn) {
	v := recover()
	if v == nil {
		return
	}
	c.srv.book.panicked(c.info.Client, v, debug.Stack())
	c.meter = nil // it may be what panicked
	l.finish(c, fmt.Errorf("listener: panic: %v", v), true)
}

// finish ends c: it closes both sockets (with a reset when reset is set, so each peer learns
// of a failure), stops its relay, gives back its backend count, and tells the Observer. Safe
// to call on a connection already finished.
func (l *loop) finish(c *loopConn, cause error, reset bool) {
	if c.state == stateClosed {
		return
	}
	opened := c.state == stateRelaying
	c.state = stateClosed
	// Even if what follows panics (an Observer, the Picker), the connection leaves the loop and
	// gives its slot back; recoverConn's second finish returns at once.
	defer c.srv.connEnded()
	defer l.conns.remove(c)
	l.timers.clear(c)
	if c.cancel != nil {
		c.cancel()
		c.cancel = nil
	}
	var up, down int64
	if opened {
		up, down = l.relay.stop(l, c) // before the close: the sockmap mover reads TCP_INFO
	}
	for _, fd := range [2]int{c.cfd, c.bfd} {
		if reset && fd >= 0 {
			poll.SetResetOnClose(fd)
		}
		l.closeFD(fd)
	}
	c.cfd, c.bfd = -1, -1
	if c.backend != nil {
		c.srv.book.release(c.backend)
		c.backend = nil
	}
	c.srv.book.releaseClient(c.ticket)
	c.ticket = clientlimit.Ticket{}
	if opened { // the notice holds &c.info and c.meters: c is reused once it is delivered
		c.srv.book.closedReuse(&c.info, Traffic{Up: up, Down: down, Err: cause}, c.meter, c.reuser())
		return
	}
	if cause != nil {
		c.srv.book.rejected(c.info.Client, cause)
	}
	l.release(c)
}

// resetServer aborts every connection of one Server in this loop.
func (l *loop) resetServer(ls *loopServer, cause error) {
	l.conns.each(func(c *loopConn) {
		if c.srv == ls {
			l.finish(c, cause, true)
		}
	})
}

// errBackendClosed ends the connections CloseBackend resets: "closed", as in the goroutine plane.
var errBackendClosed = fmt.Errorf("listener: backend closed: %w", net.ErrClosed)

// closeBackend resets the loop's connections to the backend with the given key, those still
// connecting included, and reports how many.
func (l *loop) closeBackend(ls *loopServer, key string) int {
	n := 0
	l.conns.each(func(c *loopConn) {
		if c.srv == ls && c.backend != nil && c.backend.Key() == key {
			l.finish(c, errBackendClosed, true)
			n++
		}
	})
	return n
}
