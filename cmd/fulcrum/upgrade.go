package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"

	"github.com/fulcrumlb/fulcrum/admin"
)

// Zero-downtime upgrades. On SIGHUP the running process starts its successor (the binary at
// os.Args[0], with the same arguments and environment) through tableflip, which hands it the
// listening sockets: the balanced port and the admin port. Connections that arrive meanwhile
// wait in the shared kernel backlog and are accepted by whichever process accepts first; none
// is refused. The registry goes along as a snapshot in an extra inherited file, taken while
// the old process's admin API is paused, so that no change is applied after the snapshot and
// lost. Once the successor is ready, the old process stops accepting, drains its connections
// (at most --drain-timeout) and exits 0.

// registryFile is the name of the inherited file that carries the registry snapshot.
const registryFile = "fulcrum-registry"

// upgradeTimeout bounds how long a successor may take to become ready; meanwhile the admin
// API is paused (its requests wait in the backlog).
const upgradeTimeout = 30 * time.Second

// handover wraps tableflip's Upgrader. A nil *handover (in-process tests) listens with
// net.Listen and never upgrades.
type handover struct {
	upg     *tableflip.Upgrader
	log     *slog.Logger
	pidFile string
	hup     chan os.Signal
	notify  notifier // RELOADING=1 on SIGHUP, READY=1 again if the upgrade fails
}

// upgrades hands tableflip's Upgrader, of which a process may have only one, to the first
// serve that asks: main makes one for the process and passes it in. A second serve in the same
// process (in-process tests) runs without upgrades. A nil *upgrades grants none.
type upgrades struct {
	taken atomic.Bool
}

func (u *upgrades) take() bool { return u != nil && u.taken.CompareAndSwap(false, true) }

// newHandover starts listening for SIGHUP and takes over the sockets of a parent process, if
// this process is an upgrade. It returns nil (no upgrades) when u grants none.
func newHandover(cfg *config, u *upgrades) (*handover, error) {
	if !u.take() {
		cfg.log.Debug("SIGHUP upgrades are off: another serve in this process has them")
		return nil, nil
	}
	h := &handover{log: cfg.log, pidFile: cfg.pidFile, hup: make(chan os.Signal, 1), notify: cfg.notify}
	signal.Notify(h.hup, syscall.SIGHUP)
	upg, err := tableflip.New(tableflip.Options{PIDFile: cfg.pidFile, UpgradeTimeout: upgradeTimeout})
	if err != nil {
		signal.Stop(h.hup)
		return nil, fmt.Errorf("upgrades on SIGHUP: %w", plainUpgradeErr(err))
	}
	h.upg = upg
	return h, nil
}

// stop ends SIGHUP handling and any upgrade in progress; the PID file goes if it is still ours.
// Safe on nil and twice.
func (h *handover) stop() {
	if h == nil {
		return
	}
	signal.Stop(h.hup)
	h.upg.Stop()
	if h.pidFile != "" {
		if b, err := os.ReadFile(h.pidFile); err == nil && string(bytes.TrimSpace(b)) == strconv.Itoa(os.Getpid()) {
			os.Remove(h.pidFile)
		}
	}
}

// listen returns the parent's socket for the listener named role ("listen", "admin") on
// addr, or a new one. tableflip matches sockets by name; the role is part of it because two
// listeners may share an address as given (127.0.0.1:0), and the address is too, so that a
// successor started with another address opens a new socket.
func (h *handover) listen(role, addr string) (net.Listener, error) {
	if h == nil {
		return listenTCP("tcp", addr)
	}
	return h.upg.ListenWithCallback("tcp", role+"="+addr, func(network, _ string) (net.Listener, error) {
		return listenTCP(network, addr)
	})
}

// listenTCP listens without TCP keepalive on accepted sockets: Go turns it on by default,
// which costs four setsockopt calls per connection, and fulcrum's idle timeout already ends
// dead connections. (A listener inherited in an upgrade keeps Go's default.)
func listenTCP(network, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), network, addr)
}

// ready tells the parent (if any) to hand over, and writes the PID file.
func (h *handover) ready() error {
	if h == nil {
		return nil
	}
	if err := h.upg.Ready(); err != nil {
		return fmt.Errorf("signal readiness to the previous process: %w", plainUpgradeErr(err))
	}
	if h.upg.HasParent() {
		h.log.Info("upgrade complete: serving on the sockets of the previous process", "pid", os.Getpid())
	}
	return nil
}

// upgraded reports whether this process took over from a previous one.
func (h *handover) upgraded() bool { return h != nil && h.upg.HasParent() }

// exit is closed once a successor has taken over.
func (h *handover) exit() <-chan struct{} {
	if h == nil {
		return nil
	}
	return h.upg.Exit()
}

// restore imports the parent's registry snapshot into the services' pools; it reports whether
// there was one. A snapshot from a newer fulcrum (a downgrade) is an error: this process
// exits and the parent serves on.
func (h *handover) restore(services []*servicePool) (bool, error) {
	if h == nil || !h.upg.HasParent() {
		return false, nil
	}
	f, err := h.upg.File(registryFile)
	if err != nil || f == nil {
		h.log.Error("upgrade: no registry from the previous process", "err", err)
		return false, nil
	}
	defer f.Close()
	data, err := readInherited(f)
	var n int
	if err == nil {
		n, err = importState(services, data, h.log)
	}
	if errors.Is(err, errNewerState) {
		return false, fmt.Errorf("upgrade: the registry of the previous process was %w", err)
	}
	if err != nil {
		h.log.Error("upgrade: registry from the previous process unusable", "err", err)
		return false, nil
	}
	h.log.Info("registry taken over from the previous process", "backends", n)
	return true, nil
}

// readInherited reads the whole snapshot from offset 0: the descriptor shares its offset with
// the parent's, which stands at the end.
func readInherited(f *os.File) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read registry snapshot: %w", err)
	}
	data, err := io.ReadAll(io.NewSectionReader(f, 0, fi.Size()))
	if err != nil {
		return nil, fmt.Errorf("read registry snapshot: %w", err)
	}
	return data, nil
}

// watch upgrades on every SIGHUP until ctx ends or an upgrade succeeds.
func (h *handover) watch(ctx context.Context, services []*servicePool, as *adminServer, store *stateStore) {
	if h == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.exit():
			return
		case <-h.hup:
			h.notify.reloading()
			if err := h.upgrade(ctx, services, as, store); err != nil {
				h.log.Error("upgrade failed; still serving", "err", err)
				h.notify.ready(false)
				continue
			}
			h.log.Info("upgrade: successor ready; draining this process", "pid", os.Getpid())
			return
		}
	}
}

// upgrade pauses the admin API, hands the registry and the sockets to a successor and waits
// until it is ready. On failure the admin API serves again.
func (h *handover) upgrade(ctx context.Context, services []*servicePool, as *adminServer, store *stateStore) error {
	h.log.Info("SIGHUP: starting the successor process")
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	resume, err := as.pause(pctx)
	cancel()
	if err != nil {
		return err
	}
	if store != nil {
		store.freeze()
	}
	err = h.addSnapshot(services)
	if err == nil {
		err = plainUpgradeErr(h.upg.Upgrade())
	}
	if err != nil {
		if store != nil {
			store.thaw()
		}
		if rerr := resume(); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	return nil
}

// plainUpgradeErr is err without the upgrade library's name, which its errors begin with and
// which means nothing to an operator. Only the text changes: the error stays wrapped.
func plainUpgradeErr(err error) error {
	if err == nil {
		return nil
	}
	return &plainError{err: err, msg: strings.ReplaceAll(err.Error(), "tableflip: ", "")}
}

type plainError struct {
	err error
	msg string
}

func (e *plainError) Error() string { return e.msg }
func (e *plainError) Unwrap() error { return e.err }

// addSnapshot writes every service's registry to an unlinked temporary file that the
// successor inherits.
func (h *handover) addSnapshot(services []*servicePool) error {
	data, err := encodeState(services)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp("", "fulcrum-registry-*")
	if err != nil {
		return fmt.Errorf("registry snapshot: %w", err)
	}
	defer f.Close()
	os.Remove(f.Name()) // only the descriptor is needed
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("registry snapshot: %w", err)
	}
	if err := h.upg.AddFile(registryFile, f); err != nil {
		return fmt.Errorf("registry snapshot: %w", err)
	}
	return nil
}

// adminServer runs the admin HTTP server and can pause it for an upgrade: pausing closes this
// process's listener (the socket lives on in the successor, where new connections wait in
// the backlog) and waits until every connection it accepted has been answered and closed.
//
// http.Server.Shutdown is not used to pause: a connection accepted just before it, whose
// request is read after it began, is closed without a reply, so a heartbeat sent during an
// upgrade could fail. Instead keep-alives are turned off (idle connections close, busy ones
// close after their reply) and the listener alone is closed.
type adminServer struct {
	addr    string
	handler http.Handler
	errc    chan<- error // where a failing Serve reports

	mu     sync.Mutex
	srv    *http.Server
	ln     net.Listener
	served chan struct{} // closed when the current Serve has returned
	paused bool          // the listener was closed on purpose
	open   int           // connections accepted and not yet closed
}

// serve starts serving ln in a new goroutine, which ends when ln is closed.
func (as *adminServer) serve(ln net.Listener) {
	served := make(chan struct{})
	as.mu.Lock()
	if as.srv == nil {
		as.srv = admin.NewServer(as.addr, as.handler)
		as.srv.ConnState = as.connState
	}
	srv := as.srv
	as.ln, as.served, as.paused = ln, served, false
	as.mu.Unlock()
	srv.SetKeepAlivesEnabled(true)
	go func() {
		defer close(served)
		err := srv.Serve(ln)
		as.mu.Lock()
		paused := as.paused
		as.mu.Unlock()
		if !paused && !errors.Is(err, http.ErrServerClosed) {
			as.errc <- err
		}
	}()
}

func (as *adminServer) connState(_ net.Conn, st http.ConnState) {
	as.mu.Lock()
	defer as.mu.Unlock()
	switch st {
	case http.StateNew:
		as.open++
	case http.StateClosed, http.StateHijacked:
		as.open--
	}
}

// server is the http.Server, for the final shutdown.
func (as *adminServer) server() *http.Server {
	as.mu.Lock()
	defer as.mu.Unlock()
	return as.srv
}

// pause stops serving and returns a function that serves the same socket again.
func (as *adminServer) pause(ctx context.Context) (resume func() error, err error) {
	as.mu.Lock()
	srv, ln, served := as.srv, as.ln, as.served
	as.mu.Unlock()
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil, fmt.Errorf("pause admin: listener is %T, not TCP", ln)
	}
	dup, err := tl.File() // keeps the socket for resume; closing ln does not close it
	if err != nil {
		return nil, fmt.Errorf("pause admin: %w", err)
	}
	as.mu.Lock()
	as.paused = true // Serve's error below is ours, not a failure
	as.mu.Unlock()
	srv.SetKeepAlivesEnabled(false) // closes idle connections; busy ones close after replying
	ln.Close()
	<-served // from here on no connection is accepted, so open only falls
	resume = func() error {
		defer dup.Close()
		ln, err := net.FileListener(dup)
		if err != nil {
			return fmt.Errorf("resume admin: %w", err)
		}
		as.serve(ln)
		return nil
	}
	if err := as.waitIdle(ctx); err != nil {
		return nil, errors.Join(err, resume())
	}
	return resume, nil
}

// waitIdle waits until every admin connection has closed.
func (as *adminServer) waitIdle(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		as.mu.Lock()
		open := as.open
		as.mu.Unlock()
		if open == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pause admin: %d connections still open: %w", open, ctx.Err())
		case <-t.C:
		}
	}
}
