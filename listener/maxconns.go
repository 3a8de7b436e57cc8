package listener

// ConnLimit caps the connections served at once by one or several Servers (MaxConns, or a
// shared Server.Limit): at the cap they stop accepting, so clients wait in the kernel's
// backlog, and resume below it.
type ConnLimit struct {
	max   int
	slots chan struct{} // one token per connection served
}

// NewConnLimit returns a cap of n connections; nil (no cap) when n is 0 or less.
func NewConnLimit(n int) *ConnLimit {
	if n <= 0 {
		return nil
	}
	return &ConnLimit{max: n, slots: make(chan struct{}, n)}
}

// takeSlot waits for room under the cap before the next accept, so that at the cap clients
// queue in the kernel's backlog instead of being accepted and dropped. It returns false when
// Shutdown has begun.
func (s *Server) takeSlot() bool {
	if s.limit == nil {
		return true
	}
	select {
	case s.limit.slots <- struct{}{}:
		return true
	default:
	}
	s.logLimit.Do(func() { s.logger().Warn("connection limit reached; accepting paused", "max_conns", s.limit.max) })
	select {
	case s.limit.slots <- struct{}{}:
		return true
	case <-s.done:
		return false
	}
}

// freeSlot gives back the slot of a connection that has ended or was never served.
func (s *Server) freeSlot() {
	if s.limit != nil {
		<-s.limit.slots
	}
}
