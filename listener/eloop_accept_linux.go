//go:build linux

package listener

import (
	"net/netip"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// acceptBatch bounds the connections one wake-up accepts, so a flood of new clients cannot
// starve the established ones; the listener is level-triggered and wakes the loop again.
const acceptBatch = 64

// relayEvents is the registration of both sockets of a connection, made once: edge-triggered,
// so a socket is never re-armed or modified for its whole life.
const relayEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

func (l *loop) addListener(ll *loopListener) {
	l.listeners = append(l.listeners, ll)
	if l.accepting {
		l.watchListener(ll, true)
		return
	}
	l.updateAccepting()
}

func (l *loop) removeListener(ll *loopListener) {
	i := slices.Index(l.listeners, ll)
	if i < 0 {
		return
	}
	if l.accepting {
		l.watchListener(ll, false)
	}
	l.listeners = slices.Delete(l.listeners, i, i+1)
}

// updateAccepting registers the listeners when the loop may accept (not at MaxConns, not
// backing off after an accept error) and takes them out of the epoll set when it may not,
// so that waiting clients stay in the kernel's backlog and never wake the loop.
func (l *loop) updateAccepting() {
	want := !l.capped && l.acceptRetryAt.IsZero()
	if want == l.accepting {
		return
	}
	l.accepting = want
	for _, ll := range l.listeners {
		l.watchListener(ll, want)
	}
}

func (l *loop) watchListener(ll *loopListener, on bool) {
	if on {
		if err := l.register(ll.fd, unix.EPOLLIN|unix.EPOLLEXCLUSIVE, slot{kind: slotListener, ll: ll}); err != nil {
			l.e.notes.log(errorLevel, "cannot watch listener", "loop", l.id, "err", err)
		}
		return
	}
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, ll.fd, nil) // fails only if it was not there
	if ll.fd < len(l.slots) {
		l.slots[ll.fd] = slot{}
	}
}

// acceptFrom accepts what ll has queued, up to acceptBatch.
func (l *loop) acceptFrom(ll *loopListener) {
	for i := 0; i < acceptBatch && l.accepting; i++ {
		if !l.reserveConn() {
			return
		}
		fd, sa, err := unix.Accept4(ll.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			l.e.connEnded()
			if err == unix.EAGAIN || err == unix.EINTR || err == unix.ECONNABORTED {
				if err == unix.EAGAIN {
					return
				}
				continue
			}
			l.backOffAccepting(err)
			return
		}
		l.acceptBackoff = 0
		l.e.stats.Accepted.Add(1)
		l.startConn(ll, fd, sa)
	}
}

// reserveConn counts one more connection, or pauses accepting at MaxConns.
func (l *loop) reserveConn() bool {
	max := int64(l.e.cfg.MaxConns)
	n := l.e.active.Add(1)
	if max <= 0 || n <= max {
		return true
	}
	l.e.active.Add(-1)
	l.capped = true
	l.e.paused.Add(1)
	l.updateAccepting()
	l.e.logLimit.Do(func() {
		l.e.notes.log(warnLevel, "connection limit reached; accepting paused", "max_conns", max)
	})
	if l.e.active.Load() < max { // a connection ended before this loop counted as paused
		l.resumeAccepting()
	}
	return false
}

// resumeAccepting ends a pause at MaxConns; another loop posts it when a connection ends.
func (l *loop) resumeAccepting() {
	if !l.capped {
		return
	}
	l.capped = false
	l.e.paused.Add(-1)
	l.updateAccepting()
}

// backOffAccepting pauses accepting after an error such as EMFILE: 5 ms, doubling to 1 s,
// until an accept succeeds. Retrying at once would spin on a listener that stays readable.
func (l *loop) backOffAccepting(err error) {
	l.e.stats.AcceptErrs.Add(1)
	l.acceptBackoff = min(max(2*l.acceptBackoff, 5*time.Millisecond), time.Second)
	l.acceptRetryAt = l.now.Add(l.acceptBackoff)
	l.updateAccepting()
	backoff := l.acceptBackoff
	l.e.logAccept.Do(func() {
		l.e.notes.log(errorLevel, "accept failed", "err", os.NewSyscallError("accept4", err), "retry_in", backoff)
	})
}

// startConn takes an accepted client socket into the loop.
func (l *loop) startConn(ll *loopListener, fd int, sa unix.Sockaddr) {
	c := &loopConn{cfd: fd, bfd: -1, timerIndex: -1}
	defer l.recoverConn(c)
	c.info = ConnInfo{Client: sockaddrAddrPort(sa), Local: ll.local, Start: l.now}
	if ll.wildcard {
		if lsa, err := unix.Getsockname(fd); err == nil {
			c.info.Local = sockaddrAddrPort(lsa)
		}
	}
	c.up.readable = true // bytes may come before the backend is dialed; the edge is not kept
	l.conns.add(c)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) // as Go sets on every TCP socket
	if err := l.register(fd, relayEvents, slot{kind: slotClient, c: c}); err != nil {
		l.finish(c, err, true)
		return
	}
	if l.e.cfg.ProxyProtocol.accepts() {
		l.awaitHeader(c)
		return
	}
	l.connect(c)
}

// sockaddrAddrPort converts an accepted socket's address, IPv4-mapped IPv6 unmapped.
func sockaddrAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}

// addrPortSockaddr converts a backend address for connect(2).
func addrPortSockaddr(ap netip.AddrPort) (int, unix.Sockaddr) {
	if a := ap.Addr(); a.Is4() || a.Is4In6() {
		return unix.AF_INET, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}
	}
	return unix.AF_INET6, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}
