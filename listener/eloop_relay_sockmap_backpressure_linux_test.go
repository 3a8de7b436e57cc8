//go:build linux

package listener

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fulcrumlb/fulcrum/pool"
)

// bpTotal is what the stalled sender tries to send: far more than every buffer between it
// and its reader (two sockets' receive and send buffers, about 20 MiB at most, plus what
// the mover lets the kernel hold), so without back-pressure it finishes long before its
// reader starts, and with it the sender stalls well short of it.
const bpTotal = 160 << 20

// bpHeld is the most a stalled path may hold of the sender's bytes, outside the sender's
// own send queue: the proxy's receive and send buffers and the backend's (client's) receive
// buffer (up to 6 + 4 + 6 MiB with Linux's default autotuning limits), plus pauseAfter and
// what the kernel takes before the next look (the looks of a connection that was quiet
// are up to a second apart: a loaded machine that is slow to start the sender leaves the
// kernel more time). Without back-pressure the kernel holds all of bpTotal.
const bpHeld = 64 << 20

// bpStream is the sender's bytes: a fixed pseudo-random stream, fed in 64 KiB pieces.
type bpStream struct {
	rng  *rand.ChaCha8
	sent atomic.Int64
	sum  chan []byte // the SHA-256 of all bpTotal bytes, once send has written them
}

// sumOnce waits for the SHA-256 of the bytes send wrote.
func (s *bpStream) sumOnce() []byte { return <-s.sum }

// send writes bpTotal bytes of the stream to c, counting them as it goes.
func (s *bpStream) send(c *net.TCPConn) error {
	s.rng = rand.NewChaCha8([32]byte{19})
	h := sha256.New()
	buf := make([]byte, 64<<10)
	for s.sent.Load() < bpTotal {
		s.rng.Read(buf)
		h.Write(buf)
		n, err := c.Write(buf)
		s.sent.Add(int64(n))
		if err != nil {
			return err
		}
	}
	s.sum <- h.Sum(nil)
	return nil
}

// outQueue is what sits in c's send queue: written, not yet acknowledged by its peer.
func outQueue(t *testing.T, c *net.TCPConn) int64 {
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	rc.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) })
	if err != nil {
		t.Fatal(err)
	}
	return int64(n)
}

// waitStalled waits until the mover has paused a direction and the sender's writes have
// stopped with its own send queue full (TCP flow control reached it), then checks that the
// path holds no more than bpHeld of the sender's bytes. A sender still making progress is
// waited for, not failed: only one that finishes, or that the kernel lets run on past
// bpHeld, fails.
func waitStalled(t *testing.T, el *EventLoops, sender *net.TCPConn, s *bpStream, done <-chan error) {
	t.Helper()
	var last int64 = -1
	resEventually(t, "the sender to stall", func() bool {
		select {
		case err := <-done:
			t.Fatalf("the sender wrote all %d bytes to a reader that does not read (%v)", bpTotal, err)
		default:
		}
		sent, queued := s.sent.Load(), outQueue(t, sender)
		if held := sent - queued; held > bpHeld {
			t.Fatalf("the path holds %d MiB of a stalled reader's bytes, want at most %d", held>>20, bpHeld>>20)
		}
		stalled := sent == last && queued >= 256<<10 && el.SockmapStats().Paused >= 1
		if stalled {
			t.Logf("stalled: %d KiB sent, %d KiB in the sender's queue, %d KiB held past it", sent>>10, queued>>10, (sent-queued)>>10)
		}
		last = sent
		return stalled
	})
	// Each poll above is ~2 ms apart; make the stall last across a longer look too.
	for deadline := time.Now().Add(200 * time.Millisecond); time.Now().Before(deadline); {
		if sent := s.sent.Load(); sent-outQueue(t, sender) > bpHeld {
			t.Fatalf("the path holds %d MiB of a stalled reader's bytes, want at most %d", (sent-outQueue(t, sender))>>20, bpHeld>>20)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// bpObserver records each closed connection's Traffic, and keeps the Meter of each opened
// one to check what it was told.
type bpObserver struct {
	closed chan Traffic
	meters *sync.Map // *bpMeter → true
}

func newBPObserver() bpObserver {
	return bpObserver{closed: make(chan Traffic, 1), meters: new(sync.Map)}
}

func (bpObserver) Rejected(netip.AddrPort, error)   {}
func (bpObserver) DialFailed(*pool.Backend, error)  {}
func (o bpObserver) Closed(_ *ConnInfo, tr Traffic) { o.closed <- tr }
func (o bpObserver) Opened(*ConnInfo) Meter {
	m := new(bpMeter)
	o.meters.Store(m, true)
	return m
}

// bpMeter sums what it is told each way.
type bpMeter struct{ up, down atomic.Int64 }

func (m *bpMeter) Moved(up bool, n int64) {
	if up {
		m.up.Add(n)
	} else {
		m.down.Add(n)
	}
}
func (m *bpMeter) Flush() {}

// closedWith waits for the connection's Traffic and checks it and its meter against the
// bytes each way.
func closedWith(t *testing.T, o bpObserver, up, down int64) {
	t.Helper()
	var tr Traffic
	select {
	case tr = <-o.closed:
	case <-time.After(15 * time.Second):
		t.Fatal("the connection did not close")
	}
	if tr.Up != up || tr.Down != down || tr.Err != nil {
		t.Errorf("traffic %+v, want %d up, %d down, no error", tr, up, down)
	}
	o.meters.Range(func(k, _ any) bool {
		if m := k.(*bpMeter); m.up.Load() != up || m.down.Load() != down {
			t.Errorf("the meter was told %d up, %d down; want %d, %d", m.up.Load(), m.down.Load(), up, down)
		}
		return true
	})
}

// TestSockmapBackPressureUpload: a promoted upload to a backend that stops reading stops
// being taken from the client after a bounded amount (the client's writes stall with its
// send queue full); once the backend reads again it gets every byte once, in order, then the
// FIN, and the counts and meters are exact.
func TestSockmapBackPressureUpload(t *testing.T) {
	release := make(chan struct{})
	got := make(chan error, 1)
	reply := []byte("all received")
	s := bpStream{sum: make(chan []byte, 1)}
	backend := func(c *net.TCPConn) {
		c.Read(make([]byte, 1)) // the client's go-ahead, once promoted
		<-release
		h := sha256.New()
		n, err := io.Copy(h, c)
		if err == nil && n != bpTotal {
			err = fmt.Errorf("backend read %d of %d bytes", n, bpTotal)
		}
		if err == nil && !bytes.Equal(h.Sum(nil), s.sumOnce()) {
			err = errors.New("the backend read other bytes than the client sent")
		}
		got <- err
		c.Write(reply)
		c.CloseWrite()
	}
	obs := newBPObserver()
	_, el, addr := smProxy(t, -1, backend, func(s *Server) { s.Observer = obs })
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // a failed test lets the backend go
	c := resDial(t, addr)
	resEventually(t, "the connection to be promoted", func() bool { return el.SockmapStats().InKernel == 1 })
	if _, err := c.Write([]byte("g")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.send(c) }()
	waitStalled(t, el, c, &s, done)

	releaseOnce.Do(func() { close(release) })
	if err := <-done; err != nil {
		t.Fatalf("the client's upload failed once the backend read: %v", err)
	}
	c.CloseWrite()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if err := readExactly(c, reply); err != nil {
		t.Fatal(err)
	}
	closedWith(t, obs, 1+bpTotal, int64(len(reply)))
}

// TestSockmapBackPressureDownload: the same for a download to a client that stops reading,
// and the other direction goes on through the kernel meanwhile.
func TestSockmapBackPressureDownload(t *testing.T) {
	s := bpStream{sum: make(chan []byte, 1)}
	done := make(chan error, 1)
	heard := make(chan string, 1)
	sender := make(chan *net.TCPConn, 1)
	backend := func(c *net.TCPConn) {
		c.Read(make([]byte, 1)) // the client's go-ahead, once promoted
		sender <- c
		go func() { // what the client says meanwhile comes through the kernel
			b, _ := io.ReadAll(c)
			heard <- string(b)
		}()
		err := s.send(c)
		c.CloseWrite()
		done <- err
	}
	obs := newBPObserver()
	_, el, addr := smProxy(t, -1, backend, func(s *Server) { s.Observer = obs })
	c := resDial(t, addr)
	resEventually(t, "the connection to be promoted", func() bool { return el.SockmapStats().InKernel == 1 })
	if _, err := c.Write([]byte("g")); err != nil {
		t.Fatal(err)
	}
	waitStalled(t, el, <-sender, &s, done)
	const said = "still talking"
	if _, err := c.Write([]byte(said)); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()

	rest := make(chan error, 1)
	go func() {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		n, err := io.Copy(h, c)
		if err == nil && n != bpTotal {
			err = fmt.Errorf("client read %d of %d bytes", n, bpTotal)
		}
		if err := <-done; err != nil {
			rest <- fmt.Errorf("the backend's download failed once the client read: %w", err)
			return
		}
		if err == nil && !bytes.Equal(h.Sum(nil), s.sumOnce()) {
			err = errors.New("the client read other bytes than the backend sent")
		}
		rest <- err
	}()
	if err := <-rest; err != nil {
		t.Fatal(err)
	}
	if h := <-heard; h != said {
		t.Errorf("backend heard %q, want %q", h, said)
	}
	closedWith(t, obs, 1+int64(len(said)), bpTotal)
}

// TestSockmapBackPressureBulkBothWays: promoted bulk transfers whose readers read at full
// speed, which lag the kernel now and then and may be paused, are neither reset nor stalled:
// every byte arrives once, in order, and the counts are exact.
func TestSockmapBackPressureBulkBothWays(t *testing.T) {
	const conns, size = 8, 64 << 20
	obs := resObserver{closed: make(chan Traffic, conns)}
	sink := func(c *net.TCPConn) { // returns the SHA-256 of what it read, then its FIN
		h := sha256.New()
		io.Copy(h, c)
		c.Write(h.Sum(nil))
		c.CloseWrite()
	}
	_, el, addr := smProxy(t, -1, sink, func(s *Server) { s.Observer = obs })
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := bulkUpload(addr, size, byte(i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for range conns {
		if tr := <-obs.closed; tr.Up != size || tr.Down != sha256.Size || tr.Err != nil {
			t.Errorf("traffic %+v, want %d up, %d down, no error", tr, size, sha256.Size)
		}
	}
	t.Logf("%d of %d directions paused", el.SockmapStats().Paused, conns)
}

// bulkUpload sends size pseudo-random bytes as fast as the connection takes them and wants
// their SHA-256 back.
func bulkUpload(addr string, size int, seed byte) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	rng := rand.NewChaCha8([32]byte{seed})
	h := sha256.New()
	buf := make([]byte, 256<<10)
	for n := 0; n < size; n += len(buf) {
		rng.Read(buf)
		h.Write(buf)
		if _, err := c.Write(buf); err != nil {
			return fmt.Errorf("upload at %d of %d bytes: %w", n, size, err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, h.Sum(nil)) {
		return fmt.Errorf("the sink's SHA-256 differs from the bytes sent (%v)", err)
	}
	return nil
}
