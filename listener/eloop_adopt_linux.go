//go:build linux

package listener

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/fulcrumlb/fulcrum/listener/internal/poll"
)

// The event loops' side of SNI routing (sni.go): the router reads the hello on a goroutine,
// then hands the socket, the bytes read and the cap slot to one loop, which serves it from
// the pick on as if it had accepted it; the hello goes to the backend first, as the bytes
// read past an inbound PROXY header do (loopConn.rest).

// adopt serves a connection an SNIRouter routed to this Server; false when it is shutting
// down. Under mu, closing is either seen or the count is raised before Shutdown looks at it.
func (ls *loopServer) adopt(tc *net.TCPConn, info ConnInfo, prefix []byte) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.closing.Load() {
		return false
	}
	l := ls.el.nextLoop()
	if l == nil {
		return false
	}
	fd, err := dupSocket(tc)
	if err != nil {
		ls.book.log(errorLevel, "cannot take a routed connection", "client", info.Client, "err", err)
		return false
	}
	ls.active.Add(1)
	if !l.post(func(l *loop) { l.adoptConn(ls, fd, info, prefix) }) {
		ls.active.Add(-1)
		unix.Close(fd)
		return false
	}
	tc.Close() // the loop holds its own descriptor of the socket
	return true
}

// dupSocket returns a non-blocking descriptor of c's socket, for a loop to own.
func dupSocket(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("routed connection: %w", err)
	}
	fd := -1
	var dupErr error
	if err := rc.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, fmt.Errorf("routed connection: %w", err)
	}
	if dupErr != nil {
		return -1, fmt.Errorf("routed connection: dup: %w", dupErr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("routed connection: %w", err)
	}
	return fd, nil
}

// nextLoop starts the loops if no Server has yet, and returns the next one in turn; nil
// when they have stopped.
func (el *EventLoops) nextLoop() *loop {
	el.mu.Lock()
	defer el.mu.Unlock()
	if el.stopped {
		return nil
	}
	if !el.started {
		if err := el.start(); err != nil {
			return nil
		}
	}
	el.adoptNext++
	return el.loops[el.adoptNext%len(el.loops)]
}

// adoptConn takes a routed client socket into the loop and connects it; a loop that is
// ending (its last tasks run after its connections are reset) closes it instead.
func (l *loop) adoptConn(ls *loopServer, fd int, info ConnInfo, prefix []byte) {
	if l.quit {
		poll.SetResetOnClose(fd)
		unix.Close(fd)
		ls.connEnded()
		return
	}
	c := l.newConn(ls, fd)
	c.info, c.rest = info, prefix
	defer l.recoverConn(c)
	l.conns.add(c)
	if err := l.register(fd, relayEvents, slot{kind: slotClient, c: c}); err != nil {
		l.finish(c, err, true)
		return
	}
	l.admitThenConnect(c)
}
