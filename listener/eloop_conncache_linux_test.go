//go:build linux

package listener

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/fulcrumlb/fulcrum/pool"
)

// reuseRecorder is an Observer that checks, per ConnInfo pointer, that a connection's struct
// serves no other connection between its Opened and the Flush of its Meter: the one Meter it
// returns for a connection counts the bytes, and Closed and Flush must find the connection
// Opened saw.
type reuseRecorder struct {
	mu       sync.Mutex
	open     map[*ConnInfo]*reuseMeter
	seen     map[*ConnInfo]bool // every ConnInfo pointer ever opened
	opened   int
	finished int
	errs     []string
}

type reuseMeter struct {
	r      *reuseRecorder
	info   *ConnInfo
	client netip.AddrPort
	up     int64
	closed bool
}

func (r *reuseRecorder) fail(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (*reuseRecorder) Rejected(netip.AddrPort, error)  {}
func (*reuseRecorder) DialFailed(*pool.Backend, error) {}

func (r *reuseRecorder) Opened(c *ConnInfo) Meter {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.open[c]; ok {
		r.fail("connection from %v opened in the struct of %v, whose Flush has not come", c.Client, old.client)
	}
	m := &reuseMeter{r: r, info: c, client: c.Client}
	r.open[c] = m
	r.seen[c] = true
	r.opened++
	return m
}

func (r *reuseRecorder) Closed(c *ConnInfo, t Traffic) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.open[c]
	switch {
	case !ok:
		r.fail("Closed for a connection from %v that is not open", c.Client)
	case m.client != c.Client:
		r.fail("Closed for %v found %v in its ConnInfo", m.client, c.Client)
	case t.Up != m.up || t.Down != m.up:
		r.fail("connection from %v: Traffic %d up %d down, its meter counted %d", m.client, t.Up, t.Down, m.up)
	default:
		m.closed = true
	}
}

func (m *reuseMeter) Moved(up bool, n int64) {
	if up {
		m.up += n // the loop's only: one connection's meter is moved by one loop
	}
}

func (m *reuseMeter) Flush() {
	r := m.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if !m.closed {
		r.fail("Flush before Closed for %v", m.client)
	}
	if r.open[m.info] == m {
		delete(r.open, m.info)
	}
	r.finished++
}

// TestLoopReusesConnectionStructsSafely: connections whose struct a loop reuses (their ends
// waiting in the notifier, several observers' meters in the struct) never see another
// connection's data, and the structs are reused. Run it with -race: a loop reusing a struct
// the notifier still reads is a data race.
func TestLoopReusesConnectionStructsSafely(t *testing.T) {
	const clients, each = 4, 60
	rec := &reuseRecorder{open: map[*ConnInfo]*reuseMeter{}, seen: map[*ConnInfo]bool{}}
	p := resPool(t, resBackend(t, resEcho))
	_, addr := startLoops(t, 1, &Server{Picker: p, Observer: Observers{BackendBytes{}, rec}})
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				if err := echoOnce(addr, 1+(i*each+j)%200); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	resEventually(t, "every connection's Flush", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.finished == clients*each
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, e := range rec.errs {
		t.Error(e)
	}
	if rec.opened != clients*each {
		t.Errorf("%d connections opened, want %d", rec.opened, clients*each)
	}
	if len(rec.seen) >= rec.opened {
		t.Errorf("%d connections in %d structs: none was reused, the test proves nothing", rec.opened, len(rec.seen))
	}
}

// echoOnce sends n bytes through addr and reads them back, then closes.
func echoOnce(addr string, n int) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	msg := make([]byte, n)
	if _, err := c.Write(msg); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, msg); err != nil {
		return err
	}
	c.(*net.TCPConn).CloseWrite()
	_, err = io.Copy(io.Discard, c)
	return err
}
