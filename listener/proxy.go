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

// serveConn owns one client connection from accept to close, and the backend count it takes.
func (s *Server) serveConn(pc *proxyConn) {
	defer s.trackConn(pc, false)
	defer func() {
		// A bug in one connection must not take the balancer down with every other one.
		if v := recover(); v != nil {
			s.logger().Error("panic serving connection", "client", pc.client.RemoteAddr(), "panic", v, "stack", string(debug.Stack()))
			pc.client.Close()
			if pc.backend != nil {
				pc.backend.Close()
			}
		}
	}()
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
	defer s.release(b)
	info.Backend = b
	var m Meter
	if s.Observer != nil {
		m = s.Observer.Opened(info)
	}
	t := s.joinWithPrefix(pc, info, rest, m) // PROXY protocol (proxyproto.go): header and rest, then DataPath.Join
	if s.Observer != nil {
		s.Observer.Closed(info, t)
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
	var d net.Dialer
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
