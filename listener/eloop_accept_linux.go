//go:build linux

package listener

import (
	"net/netip"
	"os"
	"runtime/debug"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/fulcrumlb/fulcrum/listener/internal/poll"
)

// acceptBatch bounds the connections one wake-up accepts, so a flood of new clients cannot
// starve the established ones; the listener is level-triggered and wakes the loop again.
const acceptBatch = 64

// relayEvents is the registration of both sockets of a connection, made once: edge-triggered,
// so a socket is never re-armed; only the kernel mover narrows it (kernelEvents) while the
// kernel moves both directions.
const relayEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

// loopAccept is one listener as one loop sees it.
type loopAccept struct {
	ll      *loopListener
	watched bool // registered in this loop's epoll set
	capped  bool // its Server is at its connection cap: paused until a connection ends
}

func (l *loop) addListener(ll *loopListener) {
	a := &loopAccept{ll: ll}
	l.accepts = append(l.accepts, a)
	l.updateAccepting(a)
}

func (l *loop) removeListener(ll *loopListener) {
	i := slices.IndexFunc(l.accepts, func(a *loopAccept) bool { return a.ll == ll })
	if i < 0 {
		return
	}
	a := l.accepts[i]
	if a.watched {
		l.watchListener(a, false)
	}
	if a.capped {
		l.el.paused.Add(-1)
	}
	l.accepts = slices.Delete(l.accepts, i, i+1)
}

// updateAccepting registers a listener when the loop may accept from it (its Server not at
// its cap, the loop not backing off after an accept error) and takes it out of the epoll set
// when it may not, so that waiting clients stay in the kernel's backlog and never wake the loop.
func (l *loop) updateAccepting(a *loopAccept) {
	if want := !a.capped && l.acceptRetryAt.IsZero(); want != a.watched {
		l.watchListener(a, want)
	}
}

func (l *loop) watchListener(a *loopAccept, on bool) {
	fd := a.ll.fd
	a.watched = on
	if on {
		if err := l.register(fd, unix.EPOLLIN, slot{kind: slotListener, acc: a}); err != nil {
			a.watched = false
			a.ll.srv.book.log(errorLevel, "cannot watch listener", "loop", l.id, "err", err)
		}
		return
	}
	l.set.Remove(fd)
}

// acceptFrom accepts what a listener has queued, up to acceptBatch.
func (l *loop) acceptFrom(a *loopAccept) {
	ls := a.ll.srv
	defer func() { // a bug here must not take the loop, and every connection on it, down
		if v := recover(); v != nil {
			ls.book.log(errorLevel, "panic accepting", "panic", v, "stack", string(debug.Stack()))
		}
	}()
	for i := 0; i < acceptBatch && a.watched; i++ {
		if !ls.reserve() {
			l.pauseAtCap(a)
			return
		}
		fd, client, err := poll.Accept(a.ll.fd)
		if err != nil {
			ls.connEnded() // the slot reserved for it
			if err == unix.EAGAIN || err == unix.EINTR || err == unix.ECONNABORTED {
				if err == unix.EAGAIN {
					return
				}
				continue
			}
			l.backOffAccepting(ls, err)
			return
		}
		l.acceptBackoff = 0
		ls.book.accepted()
		l.startConn(a.ll, fd, client)
	}
}

// pauseAtCap stops watching a listener whose Server is at its cap; a connection's end resumes it.
func (l *loop) pauseAtCap(a *loopAccept) {
	ls := a.ll.srv
	a.capped = true
	l.el.paused.Add(1)
	l.updateAccepting(a)
	ls.book.limitReached()
	if ls.hasRoom() { // a connection ended before this listener counted as paused
		l.resumeAccepting()
	}
}

// resumeAccepting watches again the paused listeners whose Server has room.
func (l *loop) resumeAccepting() {
	for _, a := range l.accepts {
		if a.capped && a.ll.srv.hasRoom() {
			a.capped = false
			l.el.paused.Add(-1)
			l.updateAccepting(a)
		}
	}
}

// backOffAccepting pauses accepting after an error such as EMFILE: 5 ms, doubling to 1 s,
// until an accept succeeds. Retrying at once would spin on a listener that stays readable.
func (l *loop) backOffAccepting(ls *loopServer, err error) {
	l.acceptBackoff = nextAcceptBackoff(l.acceptBackoff)
	l.acceptRetryAt = l.now.Add(l.acceptBackoff)
	for _, a := range l.accepts {
		l.updateAccepting(a)
	}
	ls.book.acceptFailed(os.NewSyscallError("accept4", err), l.acceptBackoff)
}

// startConn takes an accepted client socket into the loop.
func (l *loop) startConn(ll *loopListener, fd int, client netip.AddrPort) {
	c := l.newConn(ll.srv, fd)
	defer l.recoverConn(c)
	c.info = ConnInfo{Service: ll.srv.cfg.Service, Client: client, Local: ll.local, Start: l.now}
	if ll.wildcard {
		if local, err := poll.LocalAddrPort(fd); err == nil {
			c.info.Local = local
		}
	}
	l.conns.add(c)
	ll.noDelay(fd)
	if err := l.register(fd, relayEvents, slot{kind: slotClient, c: c}); err != nil {
		l.finish(c, err, true)
		return
	}
	if c.srv.cfg.ProxyProtocol.accepts() {
		l.awaitHeader(c)
		return
	}
	l.admitThenConnect(c)
}
