package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
)

// The first byte a client sends chooses what the backend does with the connection.
const (
	// ModeEcho: the backend writes back every byte it reads, the mode byte included, so a
	// 64-byte request that starts with ModeEcho gets a 64-byte reply.
	ModeEcho byte = 'e'
	// ModeSink: the backend reads and counts until EOF, then writes the count (8 bytes, big
	// endian, the mode byte not counted) and closes.
	ModeSink byte = 's'
	// ModeSource: the backend writes bulk data until the client half-closes, then closes;
	// the client receives exactly what the backend counted as sourced.
	ModeSource byte = 'r'
	// ModeRequest: the backend reads a request of 80 bytes (the mode byte included), writes
	// a 64-byte reply and closes, so the client sees the reply and then the FIN: a short
	// request/response connection, as in HTTP/1.0.
	ModeRequest byte = 'q'
	// ModeHold: the backend answers with one byte (ModeHold) and then waits for EOF, so the
	// client knows the connection reached a backend.
	ModeHold byte = 'h'
)

// Backends is a set of bench backends, in this process or in a child process.
type Backends interface {
	// Addrs are the backends' "127.0.0.1:port" addresses, in a fixed order.
	Addrs() []string
	// Stats reads every backend's counters, in the order of Addrs.
	Stats() ([]BackendStats, error)
	// Close stops the backends and their connections. Calling it twice is safe.
	Close() error
	// PID is the process the backends run in, whose CPU the timed loads report; 0 when they
	// run in this process (their CPU is then part of the client's).
	PID() int
}

// BackendStats are one backend's counters since it started.
type BackendStats struct {
	Addr     string `json:"addr"`
	Active   int64  `json:"active"`   // connections open now
	Accepted int64  `json:"accepted"` // connections ever accepted
	Sunk     int64  `json:"sunk"`     // bytes counted by ModeSink connections
	Sourced  int64  `json:"sourced"`  // bytes written by ModeSource connections
}

// Servers are bench backends running in this process.
type Servers struct {
	servers []*server
	wg      sync.WaitGroup // one per accept loop and per connection
	once    sync.Once
}

var _ Backends = (*Servers)(nil)

type server struct {
	ln                              net.Listener
	active, accepted, sunk, sourced atomic.Int64
	mu                              sync.Mutex
	conns                           map[net.Conn]struct{}
	closed                          bool
}

// StartBackends starts n backends on 127.0.0.1, on the given ports when ports is not empty
// (it must then have n entries), else on ports the kernel picks.
func StartBackends(n int, ports []int) (*Servers, error) {
	if n <= 0 {
		return nil, fmt.Errorf("bench: %d backends: need at least one", n)
	}
	if len(ports) != 0 && len(ports) != n {
		return nil, fmt.Errorf("bench: %d backend ports for %d backends", len(ports), n)
	}
	ss := &Servers{}
	for i := range n {
		port := 0
		if len(ports) != 0 {
			port = ports[i]
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			ss.Close()
			return nil, fmt.Errorf("bench: backend listen: %w", err)
		}
		s := &server{ln: ln, conns: make(map[net.Conn]struct{})}
		ss.servers = append(ss.servers, s)
		ss.wg.Add(1)
		go ss.acceptLoop(s)
	}
	return ss, nil
}

// Addrs implements Backends.
func (ss *Servers) Addrs() []string {
	out := make([]string, len(ss.servers))
	for i, s := range ss.servers {
		out[i] = s.ln.Addr().String()
	}
	return out
}

// PID implements Backends: the servers run in this process.
func (ss *Servers) PID() int { return 0 }

// Stats implements Backends.
func (ss *Servers) Stats() ([]BackendStats, error) {
	out := make([]BackendStats, len(ss.servers))
	for i, s := range ss.servers {
		out[i] = BackendStats{
			Addr: s.ln.Addr().String(), Active: s.active.Load(), Accepted: s.accepted.Load(),
			Sunk: s.sunk.Load(), Sourced: s.sourced.Load(),
		}
	}
	return out, nil
}

// Close implements Backends: it closes the listeners and every open connection, then waits
// for their goroutines.
func (ss *Servers) Close() error {
	ss.once.Do(func() {
		for _, s := range ss.servers {
			s.ln.Close()
			s.mu.Lock()
			s.closed = true
			for c := range s.conns {
				c.Close()
			}
			s.mu.Unlock()
		}
		ss.wg.Wait()
	})
	return nil
}

func (ss *Servers) acceptLoop(s *server) {
	defer ss.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // out of descriptors and the like: the client sees a failure and counts it
		}
		if !s.track(c, true) {
			c.Close()
			continue
		}
		ss.wg.Add(1)
		go ss.serveBackendConn(s, c)
	}
}

func (s *server) track(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.conns, c)
		s.active.Add(-1)
		return true
	}
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.active.Add(1)
	s.accepted.Add(1)
	return true
}

// serveBackendConn is one backend connection's goroutine; it ends when the client closes or
// the backends are closed.
func (ss *Servers) serveBackendConn(s *server, c net.Conn) {
	defer ss.wg.Done()
	defer s.track(c, false)
	defer c.Close()
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return
	}
	switch mode[0] {
	case ModeEcho:
		echo(c, mode[0])
	case ModeSink:
		n := sink(c)
		s.sunk.Add(n)
	case ModeSource:
		source(c, &s.sourced)
	case ModeRequest:
		answer(c)
	case ModeHold:
		if _, err := c.Write(mode[:]); err == nil {
			io.Copy(io.Discard, c)
		}
	}
}

// echo writes back what it reads with a plain buffer: the backend is not under test and
// small messages are cheaper this way than through splice.
func echo(c net.Conn, first byte) {
	buf := make([]byte, 32<<10)
	buf[0] = first
	if _, err := c.Write(buf[:1]); err != nil {
		return
	}
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// answer reads the rest of a ModeRequest request and writes the reply; the caller's close
// then sends the FIN. The request is read whole first, so the close sends no reset.
func answer(c net.Conn) {
	buf := [requestSize]byte{ModeRequest}
	if _, err := io.ReadFull(c, buf[1:]); err != nil {
		return
	}
	c.Write(buf[:replySize]) // the mode byte and the request's next 63 bytes
}

// sink counts bytes until EOF and replies with the count.
func sink(c net.Conn) int64 {
	n, err := io.CopyBuffer(io.Discard, readerOnly{c}, make([]byte, 256<<10))
	if err != nil {
		return n
	}
	var reply [8]byte
	binary.BigEndian.PutUint64(reply[:], uint64(n))
	c.Write(reply[:])
	return n
}

// readerOnly hides the connection's WriteTo so that io.CopyBuffer uses our buffer.
type readerOnly struct{ io.Reader }

const bulkChunk = 256 << 10

// source writes until the client half-closes (seen by a reader goroutine), then returns and
// lets the caller close; sourced counts only bytes the kernel accepted.
func source(c net.Conn, sourced *atomic.Int64) {
	var stop atomic.Bool
	done := make(chan struct{})
	go func() { // waitClientEOF: ends at the client's FIN or when c is closed
		defer close(done)
		io.Copy(io.Discard, c)
		stop.Store(true)
	}()
	buf := make([]byte, bulkChunk)
	for !stop.Load() {
		n, err := c.Write(buf)
		sourced.Add(int64(n))
		if err != nil {
			break
		}
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	<-done
}
