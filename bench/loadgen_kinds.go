package bench

import (
	"sync/atomic"
	"time"
)

// The connrate and latency loads come from a light client: one epoll loop per OS thread
// (loadgen.go, Linux only) drives all its connections over non-blocking sockets with plain
// system calls, allocating nothing per operation but the latency sample. A goroutine per
// connection would spend much of the two cores on Go's scheduler and squeeze the balancer
// under test; this client leaves that CPU to the balancer, so the comparison measures the
// balancer.

// clientKind is what a light client connection does.
type clientKind int

const (
	// transact: connect, send a requestSize request in ModeRequest, read the replySize reply
	// and then the server's FIN, close; again until the load ends. The sample is the whole
	// transaction, connect included.
	transact clientKind = iota
	// pingPong: one persistent connection sends msgSize messages in ModeEcho and waits for
	// each whole echo before the next. The sample is one round trip.
	pingPong
)

// lightLoad is one run of the light client.
type lightLoad struct {
	kind  clientKind
	addr  string // "127.0.0.1:port" or "[::1]:port"
	conns int    // workers (transact) or persistent connections (pingPong)
	loops int    // OS threads the connections are spread over; at least 1
	// end: no transaction or message starts after it. giveUp: what is still in flight then
	// is abandoned and counted as failed.
	end, giveUp time.Time
	ops         *atomic.Int64 // completed operations, for the progress line
}
