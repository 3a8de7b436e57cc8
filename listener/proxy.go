package listener

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// serveConn owns one client connection from accept until its backend is dialed, then hands it
// to proxyConn on a fresh goroutine. The dial grows this goroutine's stack to 8 KiB or more;
// a connection that then sits idle for hours would keep that stack for its whole life.
func (s *Server) serveConn(pc *proxyConn) {
	handedOff := false
	defer func() {
		if !handedOff {
			s.trackConn(pc, false)
		}
	}()
	defer s.recoverConn(pc)
	info := &ConnInfo{Client: addrPort(pc.client.RemoteAddr()), Local: addrPort(pc.client.LocalAddr()), Start: time.Now()}
	rest, err := s.readProxyHeader(pc.client, info) // PROXY protocol (proxyproto.go): may move info.Client
	var b *pool.Backend
	if err == nil {
		b, err = s.connect(pc, info.Client)
	}
	if err != nil {
		if s.Observer != nil {
			s.Observer.Rejected(info.Client, err)
		}
		pc.client.Close()
		return
	}
	info.Backend = b
	handedOff = true
	go s.proxyConn(pc, info, rest)
}

// proxyConn moves the bytes of a dialed connection until both directions end, then gives back
// the backend's count and forgets the connection.
func (s *Server) proxyConn(pc *proxyConn, info *ConnInfo, rest []byte) {
	defer s.trackConn(pc, false)
	defer s.recoverConn(pc)
	defer s.release(info.Backend)
	var m Meter
	if s.Observer != nil {
		m = s.Observer.Opened(info)
		defer flushMeter(m) // a batching meter hands on its last bytes, even after a panic
	}
	t := s.joinWithPrefix(pc, info, rest, m) // PROXY protocol (proxyproto.go): header and rest, then DataPath.Join
	if s.Observer != nil {
		s.Observer.Closed(info, t)
	}
}

// recoverConn keeps a bug in one connection from taking the balancer down with every other
// one: it logs the panic and closes the connection's sockets.
func (s *Server) recoverConn(pc *proxyConn) {
	v := recover()
	if v == nil {
		return
	}
	s.logger().Error("panic serving connection", "client", pc.client.RemoteAddr(), "panic", v, "stack", string(debug.Stack()))
	pc.client.Close()
	s.mu.Lock()
	backend := pc.backend
	s.mu.Unlock()
	if backend != nil {
		backend.Close()
	}
}

func (s *Server) release(b *pool.Backend) {
	if err := s.Picker.Release(b); err != nil {
		s.stats.ReleaseBugs.Add(1)
		s.logger().Error("connection count out of step", "backend", b.Key(), "err", err)
	}
}

// connect picks a backend and dials it, trying up to Retries other backends when a dial fails.
// On success the returned backend's count belongs to the caller; on failure nothing is held.
func (s *Server) connect(pc *proxyConn, from netip.AddrPort) (*pool.Backend, error) {
	client := from.Addr()
	var tried []*pool.Backend
	for attempt := 0; attempt <= s.Retries; attempt++ {
		b, err := s.acquire(client, tried)
		if err != nil {
			s.noBackend(from, attempt, err)
			return nil, err
		}
		s.setPicked(pc, b)
		conn, err := s.dial(b)
		s.reportDial(b, err)
		if err == nil {
			s.mu.Lock()
			pc.backend = conn
			s.mu.Unlock()
			return b, nil
		}
		s.release(b)
		s.stats.DialErrors.Add(1)
		if s.Observer != nil {
			s.Observer.DialFailed(b, err)
		}
		s.logDialErr.Do(func() { s.logger().Warn("backend dial failed", "backend", b.Key(), "client", client, "err", err) })
		tried = append(tried, b)
	}
	s.stats.Failed.Add(1)
	return nil, fmt.Errorf("listener: %d dials failed", len(tried))
}

func (s *Server) noBackend(client netip.AddrPort, attempt int, err error) {
	if errors.Is(err, pool.ErrFull) {
		s.stats.QueueDrops.Add(1)
		s.logNoPeer.Do(func() {
			s.logger().Warn("every backend is full; closing client", "client", client, "err", err)
		})
		return
	}
	if attempt > 0 {
		s.stats.Failed.Add(1) // tried some, none left to try
		return
	}
	s.stats.Rejected.Add(1)
	s.logNoPeer.Do(func() { s.logger().Warn("rejecting client", "client", client, "err", err) })
}

func (s *Server) dial(b *pool.Backend) (*net.TCPConn, error) {
	ctx, cancel := context.WithTimeout(s.baseCtx, s.connectTimeout())
	defer cancel()
	// No TCP keepalive: Go's default costs four setsockopt calls per dial, and the idle
	// timeout already ends dead connections.
	d := net.Dialer{KeepAlive: -1}
	c, err := d.DialContext(ctx, "tcp", b.DialAddress())
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", b.DialAddress(), err)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, errors.New("dial: not a TCP connection")
	}
	return tc, nil
}
