package listener

import (
	"context"
	"errors"
	"net/netip"

	"github.com/fulcrumlb/fulcrum/pool"
)

// takeSlot waits for room under MaxConns before the next accept, so that at the cap clients
// queue in the kernel's backlog instead of being accepted and dropped. It returns false when
// Shutdown has begun.
func (s *Server) takeSlot() bool {
	if s.slots == nil {
		return true
	}
	select {
	case s.slots <- struct{}{}:
		return true
	default:
	}
	s.logLimit.Do(func() { s.logger().Warn("connection limit reached; accepting paused", "max_conns", s.MaxConns) })
	select {
	case s.slots <- struct{}{}:
		return true
	case <-s.done:
		return false
	}
}

// freeSlot gives back the slot of a connection that has ended or was never served.
func (s *Server) freeSlot() {
	if s.slots != nil {
		<-s.slots
	}
}

// acquire picks a backend. When every backend is full and the Picker can queue, the client
// waits up to QueueTimeout for a slot; Shutdown's final cancel ends the wait too.
func (s *Server) acquire(client netip.Addr, tried []*pool.Backend) (*pool.Backend, error) {
	b, err := s.Picker.Acquire(client, tried)
	w, ok := s.Picker.(pool.Waiter)
	if !errors.Is(err, pool.ErrFull) || !ok || s.QueueTimeout <= 0 {
		return b, err
	}
	ctx, cancel := context.WithTimeout(s.baseCtx, s.QueueTimeout)
	defer cancel()
	return w.AcquireWait(ctx, client, tried)
}

// reportDial tells a Picker that keeps passive health how a dial went.
func (s *Server) reportDial(b *pool.Backend, err error) {
	if r, ok := s.Picker.(pool.HealthReporter); ok {
		r.ReportDial(b, err)
	}
}

func (s *Server) setPicked(pc *proxyConn, b *pool.Backend) {
	s.mu.Lock()
	pc.picked = b
	s.mu.Unlock()
}

// CloseBackend resets every connection going to the backend with the given key, including
// those still dialing it, and reports how many it closed. The admin API's remove?force=1 uses
// it after taking the backend out of picking.
func (s *Server) CloseBackend(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for pc := range s.conns {
		if pc.picked == nil || pc.picked.Key() != key {
			continue
		}
		pc.client.SetLinger(0) // fails only on a closed socket, which needs nothing more
		pc.client.Close()
		if pc.backend != nil {
			pc.backend.SetLinger(0)
			pc.backend.Close()
		}
		n++
	}
	return n
}
