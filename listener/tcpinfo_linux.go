package listener

import (
	"net"

	"github.com/fulcrumlb/fulcrum/listener/internal/poll"
)

// tcpCounters are a socket's kernel byte counters: received from the peer, and sent and
// acknowledged by it. They move whenever bytes move, whatever the copy loops are doing.
type tcpCounters struct{ received, acked uint64 }

// readTCPCounters reads TCP_INFO; a closed socket reads as zero, which is harmless because its
// connection is ending.
func readTCPCounters(c *net.TCPConn) tcpCounters {
	rc, err := c.SyscallConn()
	if err != nil {
		return tcpCounters{}
	}
	var tc tcpCounters
	rc.Control(func(fd uintptr) { tc = fdTCPCounters(int(fd)) })
	return tc
}

// fdTCPCounters reads TCP_INFO from a raw descriptor; zero when it cannot.
func fdTCPCounters(fd int) tcpCounters {
	info, err := poll.TCPInfo(fd)
	if err != nil {
		return tcpCounters{}
	}
	return tcpCounters{received: info.Bytes_received, acked: info.Bytes_acked}
}
