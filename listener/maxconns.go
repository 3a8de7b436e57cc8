package listener

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
