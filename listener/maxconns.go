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
