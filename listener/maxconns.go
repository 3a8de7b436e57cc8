package listener

// ConnLimit caps the connections served at once by one or several Servers (MaxConns, or a
// shared Server.Limit): at the cap they stop accepting, so clients wait in the kernel's
// backlog, and resume below it. Both data planes take and free its slots through its methods.
type ConnLimit struct {
	slots chan struct{} // one token per connection served; its capacity is the cap
}

// NewConnLimit returns a cap of n connections; nil (no cap) when n is 0 or less.
func NewConnLimit(n int) *ConnLimit {
	if n <= 0 {
		return nil
	}
	return &ConnLimit{slots: make(chan struct{}, n)}
}

// Max is the cap.
func (l *ConnLimit) Max() int { return cap(l.slots) }

// tryTake takes a slot if one is free.
func (l *ConnLimit) tryTake() bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// take waits for a slot; it returns false, with none taken, when done is closed first.
func (l *ConnLimit) take(done <-chan struct{}) bool {
	select {
	case l.slots <- struct{}{}:
		return true
	case <-done:
		return false
	}
}

// free gives a slot back. It never blocks (an event loop calls it): it reports false when no
// slot was taken, which only a counting bug can cause.
func (l *ConnLimit) free() bool {
	select {
	case <-l.slots:
		return true
	default:
		return false
	}
}

// hasRoom reports whether a slot is free now.
func (l *ConnLimit) hasRoom() bool { return len(l.slots) < cap(l.slots) }

// takeSlot waits for room under the cap before the next accept, so that at the cap clients
// queue in the kernel's backlog instead of being accepted and dropped. It returns false when
// Shutdown has begun. The slot is held while Accept waits for a client: with a cap shared by
// several listeners, each idle one keeps a slot (Go's listeners cannot be waited on without
// accepting). The event-loop plane takes a slot only for a client that is there.
func (s *Server) takeSlot() bool {
	lim := s.book.limit
	if lim == nil {
		return true
	}
	if lim.tryTake() {
		return true
	}
	s.book.limitReached()
	return lim.take(s.done)
}

// freeSlot gives back the slot of a connection that has ended or was never served.
func (s *Server) freeSlot() { s.book.freeSlot() }
