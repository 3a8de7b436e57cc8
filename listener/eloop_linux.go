//go:build linux

package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/fulcrumlb/fulcrum/pool"
)

// eventLoops is the Linux data plane in which a few event loops own every connection from
// accept to close: each loop runs on a locked OS thread with its own epoll instance, and
// drives non-blocking sockets with raw system calls. See eloop_loop_linux.go for one loop.
//
// Other goroutines never touch a loop's connections: they post tasks to it (post, call),
// which the loop runs between its waits. The only goroutines besides the loops are the
// notifier (observer calls and log lines, which may block) and short-lived waiters for a
// queued backend slot or a backend's name, each posting its result back to its loop.
type eventLoops struct {
	cfg   loopConfig
	loops []*loop
	stats *Stats
	notes *notifier

	active  atomic.Int64 // connections being served over every loop, queued ones included
	paused  atomic.Int32 // loops that stopped accepting at MaxConns
	closing atomic.Bool

	base       context.Context // cancelled when Shutdown gives up: ends queued waits, lookups
	cancelBase context.CancelFunc
	async      sync.WaitGroup // waiter and lookup goroutines

	mu        sync.Mutex // guards listeners and the start and stop of the loops
	listeners []*loopListener
	running   sync.WaitGroup // loop goroutines
	started   bool
	stopped   chan struct{} // closed when Shutdown has stopped everything: Serve returns

	drained chan struct{} // one token when active falls to 0 after closing began

	logNoPeer  rate.Sometimes
	logDialErr rate.Sometimes
	logAccept  rate.Sometimes
	logLimit   rate.Sometimes
	logHeader  rate.Sometimes
}

var _ loopPlane = (*eventLoops)(nil)

// newLoopPlane builds the event-loop plane; its loops start with the first Serve.
func newLoopPlane(cfg loopConfig) (loopPlane, error) { return newEventLoops(cfg), nil }

// newEventLoops builds the plane; its loops start with the first Serve.
func newEventLoops(cfg loopConfig) *eventLoops {
	e := &eventLoops{
		cfg:        cfg,
		stopped:    make(chan struct{}),
		drained:    make(chan struct{}, 1),
		logNoPeer:  rate.Sometimes{Interval: time.Second},
		logDialErr: rate.Sometimes{Interval: time.Second},
		logAccept:  rate.Sometimes{Interval: time.Second},
		logLimit:   rate.Sometimes{Interval: time.Second},
		logHeader:  rate.Sometimes{Interval: time.Second},
	}
	if e.stats = cfg.Stats; e.stats == nil {
		e.stats = new(Stats)
	}
	e.base, e.cancelBase = context.WithCancel(context.Background())
	return e
}

// loopListener is one listening socket shared by every loop: each registers the same
// descriptor with EPOLLEXCLUSIVE, so a new connection wakes one loop, which accepts it.
type loopListener struct {
	fd       int          // a duplicate of ln's descriptor, owned by the plane
	ln       net.Listener // the caller's listener, closed by Shutdown
	local    netip.AddrPort
	wildcard bool // bound to 0.0.0.0 or ::: each connection's local address must be asked for
}

// Serve accepts connections on ln in every loop until Shutdown, then returns ErrServerClosed.
// ln must be a *net.TCPListener: its descriptor is duplicated, so a listener handed over by a
// parent process (an upgrade) serves as well as a freshly bound one.
func (e *eventLoops) Serve(ln net.Listener) error {
	ll, err := newLoopListener(ln)
	if err != nil {
		ln.Close()
		return err
	}
	if !e.addListener(ll) {
		ll.close()
		return ErrServerClosed
	}
	<-e.stopped
	return ErrServerClosed
}

func newLoopListener(ln net.Listener) (*loopListener, error) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil, fmt.Errorf("listener: event loops serve TCP listeners only, not %T", ln)
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", ln.Addr(), err)
	}
	fd := -1
	var dupErr error
	if err := rc.Control(func(s uintptr) { fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, fmt.Errorf("listener %s: %w", ln.Addr(), err)
	}
	if dupErr != nil {
		return nil, fmt.Errorf("listener %s: dup: %w", ln.Addr(), dupErr)
	}
	local := addrPort(ln.Addr())
	return &loopListener{fd: fd, ln: ln, local: local, wildcard: local.Addr().IsUnspecified()}, nil
}

// close closes the plane's duplicate and the caller's listener.
func (ll *loopListener) close() error {
	unix.Close(ll.fd)
	if err := ll.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close listener %s: %w", ll.ln.Addr(), err)
	}
	return nil
}

// addListener starts the loops if need be and has each of them accept from ll. It returns
// false once Shutdown has begun.
func (e *eventLoops) addListener(ll *loopListener) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing.Load() {
		return false
	}
	if !e.started {
		if err := e.start(); err != nil {
			e.cfg.logger().Error("event loops failed to start", "err", err)
			return false
		}
	}
	e.listeners = append(e.listeners, ll)
	for _, l := range e.loops {
		l.call(func(l *loop) { l.addListener(ll) })
	}
	return true
}

// start creates the loops and the notifier. Called with e.mu held.
func (e *eventLoops) start() error {
	n := max(e.cfg.Loops, 1)
	for i := 0; i < n; i++ {
		l, err := newLoop(e, i)
		if err != nil {
			for _, l := range e.loops {
				l.closeFDs()
			}
			e.loops = nil
			return err
		}
		e.loops = append(e.loops, l)
	}
	e.notes = newNotifier(e.cfg.logger())
	e.started = true
	for _, l := range e.loops {
		e.running.Add(1)
		go l.run()
	}
	return nil
}

// Shutdown stops accepting, waits for the connections to end, and when ctx ends first resets
// the rest and returns ctx's error. Then it stops the loops. Calling it twice is safe.
func (e *eventLoops) Shutdown(ctx context.Context) error {
	first := !e.closing.Swap(true)
	errs := e.stopAccepting()
	if e.active.Load() > 0 {
		select {
		case <-e.drained:
		case <-ctx.Done():
			e.resetAll()
			errs = append(errs, ctx.Err())
		}
	}
	if first {
		e.stop()
	} else {
		<-e.stopped
	}
	return errors.Join(errs...)
}

// stopAccepting takes every listener out of every loop and closes it.
func (e *eventLoops) stopAccepting() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	for _, ll := range e.listeners {
		for _, l := range e.loops {
			l.call(func(l *loop) { l.removeListener(ll) })
		}
		if err := ll.close(); err != nil {
			errs = append(errs, err)
		}
	}
	e.listeners = nil
	return errs
}

// resetAll aborts every connection, queued and connecting ones included.
func (e *eventLoops) resetAll() {
	e.cancelBase()
	for _, l := range e.loops {
		l.call(func(l *loop) { l.resetAll(errForced) })
	}
}

// errForced is the end of connections reset by Shutdown: "closed", as in the goroutine plane.
var errForced = fmt.Errorf("listener: reset by shutdown: %w", net.ErrClosed)

// stop ends the loops once no goroutine can post to them any more, then the notifier.
func (e *eventLoops) stop() {
	e.mu.Lock()
	started := e.started
	e.mu.Unlock()
	if started {
		e.async.Wait()
		for _, l := range e.loops {
			l.call(func(l *loop) { l.quit = true })
		}
		e.running.Wait()
		e.notes.stop()
	}
	e.cancelBase()
	close(e.stopped)
}

// CloseBackend resets every connection to the backend with the given key, those still
// connecting included, and reports how many it closed.
func (e *eventLoops) CloseBackend(key string) int {
	e.mu.Lock()
	loops := e.loops
	e.mu.Unlock()
	var n atomic.Int64
	for _, l := range loops {
		l.call(func(l *loop) { n.Add(int64(l.closeBackend(key))) })
	}
	return int(n.Load())
}

// ActiveConns is the number of client connections being served.
func (e *eventLoops) ActiveConns() int { return int(e.active.Load()) }

// Stats returns the plane's counters.
func (e *eventLoops) Stats() *Stats { return e.stats }

// connEnded is called by a loop when one of its connections is gone.
func (e *eventLoops) connEnded() {
	n := e.active.Add(-1)
	if n == 0 && e.closing.Load() {
		select {
		case e.drained <- struct{}{}:
		default:
		}
	}
	if e.paused.Load() > 0 && (e.cfg.MaxConns <= 0 || n < int64(e.cfg.MaxConns)) {
		for _, l := range e.loops {
			l.post(func(l *loop) { l.resumeAccepting() })
		}
	}
}

func (e *eventLoops) release(b *pool.Backend) {
	if err := e.cfg.Picker.Release(b); err != nil {
		e.stats.ReleaseBugs.Add(1)
		e.notes.log(slog.LevelError, "connection count out of step", "backend", b.Key(), "err", err)
	}
}
