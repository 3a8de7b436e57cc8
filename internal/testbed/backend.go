package testbed

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Backend is a loopback TCP server run by a test: its handler serves each connection it
// accepts, which is closed when the handler returns. Stop (at the test's cleanup at the
// latest) closes the listener and every connection still open, and waits for every handler.
type Backend struct {
	ln       net.Listener
	handle   func(net.Conn) error
	accepted atomic.Int64
	served   atomic.Int64 // handlers that returned nil
	wg       sync.WaitGroup
	stopOnce sync.Once

	mu   sync.Mutex // guards open
	open map[net.Conn]struct{}
}

// Serve runs handle on every connection to a new 127.0.0.1 port until the test ends.
func Serve(t testing.TB, handle func(net.Conn) error) *Backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ServeOn(t, ln, handle)
}

// ServeOn runs handle on every connection ln accepts until the test ends.
func ServeOn(t testing.TB, ln net.Listener, handle func(net.Conn) error) *Backend {
	b := &Backend{ln: ln, handle: handle, open: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go b.acceptLoop()
	t.Cleanup(b.Stop)
	return b
}

// Addr is the backend's host:port.
func (b *Backend) Addr() string { return b.ln.Addr().String() }

// Port is the backend's port.
func (b *Backend) Port() int { return b.ln.Addr().(*net.TCPAddr).Port }

// Accepted is how many connections the backend has accepted.
func (b *Backend) Accepted() int64 { return b.accepted.Load() }

// Served is how many connections the handler served to the end (it returned nil); final once
// Stop has returned.
func (b *Backend) Served() int64 { return b.served.Load() }

// Open is how many accepted connections the handler still serves.
func (b *Backend) Open() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.open)
}

func (b *Backend) acceptLoop() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return // closed by Stop
		}
		b.accepted.Add(1)
		b.mu.Lock()
		b.open[c] = struct{}{}
		b.mu.Unlock()
		b.wg.Add(1)
		go b.serveConn(c)
	}
}

// serveConn is one connection's handler goroutine; Stop waits for it.
func (b *Backend) serveConn(c net.Conn) {
	defer b.wg.Done()
	if b.handle(c) == nil {
		b.served.Add(1)
	}
	c.Close()
	b.mu.Lock()
	delete(b.open, c)
	b.mu.Unlock()
}

// Stop closes the listener and every open connection, then waits for the handlers. It is safe
// to call twice.
func (b *Backend) Stop() {
	b.stopOnce.Do(func() {
		b.ln.Close()
		b.mu.Lock()
		for c := range b.open {
			c.Close()
		}
		b.mu.Unlock()
	})
	b.wg.Wait()
}
