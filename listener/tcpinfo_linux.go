package listener

import (
	"net"

	"golang.org/x/sys/unix"
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
	rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			tc = tcpCounters{received: info.Bytes_received, acked: info.Bytes_acked}
		}
	})
	return tc
}
