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

	"golang.org/x/sys/unix"

	"github.com/fulcrumlb/fulcrum/internal/asynclog"
	"github.com/fulcrumlb/fulcrum/listener/internal/poll"
)

// EventLoops is the Linux data plane in which a few event loops own every connection from
// accept to close: each loop runs on a locked OS thread with its own epoll instance, and
// drives non-blocking sockets with raw system calls (one loop: eloop_loop_linux.go). The
// Servers of one balancer share one EventLoops (Server.Loops): every loop accepts from every
// listener of every Server, and serves each connection with its own Server's settings.
//
// Other goroutines never touch a loop's connections: they post tasks to it (post, call), which
// the loop runs between its waits. The only goroutines besides the loops are the notifier
// (observer calls, which may block), the log queue's writer, and short-lived waiters for a queued backend
// slot or a backend's name, each posting its result back to its loop.
type EventLoops struct {
	n     int
	mover byteMover       // how the loops move bytes; the zero value is moverSplice
	smap  sockmapSettings // moverSockmap's kernel maps and promotion age; zero otherwise

	// heldWait bounds a busy loop's held wait in ms (eloop_wait_linux.go); 0, the default
	// (defaultHeldWait): every wait is the ordinary one. Tests set it before the loops start.
	heldWait int

	mu      sync.Mutex // guards loops, notes, logs, started and stopped
	loops   []*loop
	notes   *notifier
	logs    *asynclog.Queue // the loops' log lines, written off the loops
	started bool
	stopped bool
	running sync.WaitGroup // loop goroutines

	paused atomic.Int32 // listeners some loop stopped watching at their Server's cap

	adoptNext int // the loop the last routed connection went to (nextLoop); guarded by mu
}

// NewEventLoops returns n event loops (0 or less: DefaultLoops()); they start with the first
// Server that serves on them, and end with Stop.
func NewEventLoops(n int) *EventLoops {
	if n <= 0 {
		n = DefaultLoops()
	}
	return &EventLoops{n: n, heldWait: defaultHeldWait}
}

// start creates the loops, the notifier and the log queue. Called with el.mu held.
func (el *EventLoops) start() error {
	for i := 0; i < el.n; i++ {
		l, err := newLoop(el, i)
		if err != nil {
			for _, l := range el.loops {
				l.closeFDs()
			}
			el.loops = nil
			return err
		}
		el.loops = append(el.loops, l)
	}
	el.notes = newNotifier()
	el.logs = asynclog.New(slog.Default().Handler(), maxQueuedLogs)
	el.started = true
	for _, l := range el.loops {
		el.running.Add(1)
		go l.run()
	}
	return nil
}

// Stop ends the loops, resetting any connection still open, the notifier and the log queue
// (which then reports how many lines it dropped, if any). Call it after every Server on the
// loops has shut down; calling it twice is safe.
func (el *EventLoops) Stop() {
	el.mu.Lock()
	if el.stopped || !el.started {
		if !el.stopped {
			el.smap.kernel.close()
		}
		el.stopped = true
		el.mu.Unlock()
		return
	}
	el.stopped = true
	loops := el.loops
	el.mu.Unlock()
	// Not under el.mu: a loop finishing its last connections may take it (resumeCapped).
	for _, l := range loops {
		l.call(func(l *loop) { l.quit = true })
	}
	el.running.Wait()
	el.smap.kernel.close()
	el.notes.stop()
	el.logs.Close()
}

// log queues a line for logger; a loop never waits for it (a full queue drops it).
func (el *EventLoops) log(logger *slog.Logger, level slog.Level, msg string, args ...any) {
	slog.New(el.logs.Wrap(logger.Handler())).Log(context.Background(), level, msg, args...)
}

// each runs t on every loop and waits for it; it returns false when the loops are not running.
func (el *EventLoops) each(t task) bool {
	el.mu.Lock()
	loops := el.loops
	running := el.started && !el.stopped
	el.mu.Unlock()
	for _, l := range loops {
		l.call(t)
	}
	return running
}

// resumeCapped asks every loop to watch again the listeners it paused at a cap with room now.
func (el *EventLoops) resumeCapped() {
	el.mu.Lock()
	loops := el.loops
	el.mu.Unlock()
	for _, l := range loops {
		l.post(func(l *loop) { l.resumeAccepting() })
	}
}

// loopServer is one Server on the event loops: its settings, counters and listeners. Its
// connections live in the loops; they know their loopServer.
type loopServer struct {
	el   *EventLoops
	own  bool      // the loops were made for this Server alone: Shutdown stops them
	cfg  *Server   // the settings; set before serving, read only
	book *connBook // counts, logs and tells every transition of its connections

	active  atomic.Int64 // connections being served, queued ones included
	closing atomic.Bool
	drained chan struct{} // one token when active falls to 0 after closing began

	base       context.Context // cancelled when Shutdown gives up: ends queued waits, lookups
	cancelBase context.CancelFunc
	async      sync.WaitGroup // waiter and lookup goroutines

	mu        sync.Mutex // guards listeners
	listeners []*loopListener
	stopOnce  sync.Once
	stopped   chan struct{} // closed when Shutdown is done: Serve returns
}

var _ plane = (*loopServer)(nil)

// server binds one Server to the loops; own says the loops are that Server's alone. The
// book's events and log lines then leave through the loops' notifier and log queue.
func (el *EventLoops) server(s *Server, bk *connBook, own bool) (plane, error) {
	bk.sink = loopSink{el}
	ls := &loopServer{
		el: el, own: own, cfg: s, book: bk,
		drained: make(chan struct{}, 1),
		stopped: make(chan struct{}),
	}
	ls.base, ls.cancelBase = context.WithCancel(context.Background())
	return ls, nil
}

// loopListener is one listening socket shared by every loop: each registers the same
// descriptor, level-triggered, so a new connection wakes every loop watching it; one accepts
// it and the others find EAGAIN. Not EPOLLEXCLUSIVE: it wakes one waiter, and when that one
// stops watching (at a cap, after EMFILE, or draining for an upgrade's successor process) the
// connection would wait unseen by the others until the next one arrives.
type loopListener struct {
	srv      *loopServer
	fd       int          // a duplicate of ln's descriptor, owned by the plane
	ln       net.Listener // the caller's listener, closed by Shutdown
	local    netip.AddrPort
	wildcard bool // bound to 0.0.0.0 or ::: each connection's local address must be asked for
	// inherits is whether accepted sockets come with TCP_NODELAY, set once on the listening
	// socket: nodelayUnknown until the first accepted socket is asked.
	inherits atomic.Int32
}

const (
	nodelayUnknown int32 = iota
	nodelayInherited
	nodelayPerConn
)

// noDelay gives an accepted socket TCP_NODELAY, as Go sets on every TCP socket. Linux copies
// it from the listening socket (newLoopListener sets it there), which saves a setsockopt per
// connection; the first accepted socket checks that, and if a kernel does not, every
// connection gets its own.
func (ll *loopListener) noDelay(fd int) {
	switch ll.inherits.Load() {
	case nodelayInherited:
		return
	case nodelayUnknown:
		if v, err := poll.GetInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY); err == nil && v != 0 {
			ll.inherits.Store(nodelayInherited)
			return
		}
		ll.inherits.Store(nodelayPerConn)
	}
	poll.SetInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
}

// Serve accepts connections on ln in every loop until Shutdown, then returns ErrServerClosed.
// ln must be a *net.TCPListener: its descriptor is duplicated, so a listener handed over by a
// parent process (an upgrade) serves as well as a freshly bound one. The Go runtime stops
// watching ln's socket (poll.Detach): nothing else may Accept on ln, or on a duplicate of it
// made before Serve, in this process.
func (ls *loopServer) Serve(ln net.Listener) error {
	ll, err := newLoopListener(ls, ln)
	if err != nil {
		ln.Close()
		return err
	}
	if err := ls.addListener(ll); err != nil {
		ll.close()
		return err
	}
	<-ls.stopped
	return ErrServerClosed
}

func newLoopListener(ls *loopServer, ln net.Listener) (*loopListener, error) {
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
	// The loops accept on their duplicate; the runtime's poller, which watches the caller's
	// descriptor and any duplicate kept for an upgrade, would wake a thread per connection.
	if _, err := poll.Detach(fd); err != nil {
		ls.book.log(warnLevel, "listener also watched outside the event loops: each new connection wakes a spare thread", "listener", ln.Addr().String(), "err", err)
	}
	local := addrPort(ln.Addr())
	ll := &loopListener{srv: ls, fd: fd, ln: ln, local: local, wildcard: local.Addr().IsUnspecified()}
	if err := poll.SetInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		ll.inherits.Store(nodelayPerConn)
	}
	return ll, nil
}

// close closes the plane's duplicate and the caller's listener.
func (ll *loopListener) close() error {
	unix.Close(ll.fd)
	if err := ll.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close listener %s: %w", ll.ln.Addr(), err)
	}
	return nil
}

// addListener starts the loops if need be and has each of them accept from ll.
func (ls *loopServer) addListener(ll *loopListener) error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.closing.Load() {
		return ErrServerClosed
	}
	el := ls.el
	el.mu.Lock()
	if el.stopped {
		el.mu.Unlock()
		return ErrServerClosed
	}
	if !el.started {
		if err := el.start(); err != nil {
			el.mu.Unlock()
			return fmt.Errorf("listener: event loops: %w", err)
		}
	}
	el.mu.Unlock()
	if !el.each(func(l *loop) { l.addListener(ll) }) {
		return ErrServerClosed // the loops stopped meanwhile: Serve closes ll, nobody else
	}
	ls.listeners = append(ls.listeners, ll)
	return nil
}

// Shutdown stops accepting, waits for the connections to end, and when ctx ends first resets
// the rest and returns ctx's error. Loops made for this Server alone stop too. Calling it twice
// is safe.
func (ls *loopServer) Shutdown(ctx context.Context) error {
	ls.closing.Store(true)
	errs := ls.stopAccepting()
	// A token may be older than the last accept (a connection ended while the loops were still
	// accepting): only the count says the connections are gone.
	for ls.active.Load() > 0 && ctx.Err() == nil {
		select {
		case <-ls.drained:
		case <-ctx.Done():
		}
	}
	if ctx.Err() != nil && ls.active.Load() > 0 {
		ls.resetAll()
		errs = append(errs, ctx.Err())
	}
	ls.stopOnce.Do(func() {
		ls.async.Wait()
		if ls.own {
			ls.el.Stop()
		}
		ls.cancelBase()
		close(ls.stopped)
	})
	<-ls.stopped
	return errors.Join(errs...)
}

// stopAccepting takes every listener of this Server out of every loop and closes it.
func (ls *loopServer) stopAccepting() []error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var errs []error
	for _, ll := range ls.listeners {
		ls.el.each(func(l *loop) { l.removeListener(ll) })
		if err := ll.close(); err != nil {
			errs = append(errs, err)
		}
	}
	ls.listeners = nil
	return errs
}

// resetAll aborts every connection of this Server, queued and connecting ones included.
func (ls *loopServer) resetAll() {
	ls.cancelBase()
	ls.el.each(func(l *loop) { l.resetServer(ls, errForced) })
}

// errForced is the end of connections reset by Shutdown: "closed", as in the goroutine plane.
var errForced = fmt.Errorf("listener: reset by shutdown: %w", net.ErrClosed)

// CloseBackend resets every connection of this Server to the backend with the given key, those
// still connecting included, and reports how many it closed.
func (ls *loopServer) CloseBackend(key string) int {
	var n atomic.Int64
	ls.el.each(func(l *loop) { n.Add(int64(l.closeBackend(ls, key))) })
	return int(n.Load())
}

// ActiveConns is the number of client connections being served.
func (ls *loopServer) ActiveConns() int { return int(ls.active.Load()) }

// reserve counts one more connection, or reports that the Server is at its cap.
func (ls *loopServer) reserve() bool {
	if lim := ls.book.limit; lim != nil && !lim.tryTake() {
		return false
	}
	ls.active.Add(1)
	return true
}

// hasRoom reports whether the Server's cap would let one more connection in.
func (ls *loopServer) hasRoom() bool {
	lim := ls.book.limit
	return lim == nil || lim.hasRoom()
}

// connEnded is called by a loop when one of this Server's connections is gone (or a reserved
// accept failed): it frees the slot and wakes what waits for one.
func (ls *loopServer) connEnded() {
	ls.book.freeSlot()
	if ls.active.Add(-1) == 0 && ls.closing.Load() {
		select {
		case ls.drained <- struct{}{}:
		default:
		}
	}
	if ls.book.limit != nil && ls.el.paused.Load() > 0 { // a slot came free: a listener may resume
		ls.el.resumeCapped()
	}
}
