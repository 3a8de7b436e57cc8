//go:build !linux

package listener

import "net"

// tcpCounters is empty where TCP_INFO byte counters are not available: the idle watch then
// relies on the bytes the copy loops report.
type tcpCounters struct{}

func readTCPCounters(*net.TCPConn) tcpCounters { return tcpCounters{} }
