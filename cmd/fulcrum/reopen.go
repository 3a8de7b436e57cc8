package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// The access log can be rotated without copytruncate: logrotate renames the file and sends
// SIGUSR1, and fulcrum opens a new file at the path; lines go to the old file until then.

// reopenFile is a file appended to at a path that can be opened anew.
type reopenFile struct {
	path string

	mu     sync.Mutex // guards f and closed: writes, the swap and the close
	f      *os.File
	closed bool
}

func openReopenFile(path string) (*reopenFile, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &reopenFile{path: path, f: f}, nil
}

func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
}

func (r *reopenFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Write(p)
}

// reopen opens the path again and closes the file written so far. If the path cannot be
// opened, writing goes on to the old file.
func (r *reopenFile) reopen() error {
	f, err := openAppend(r.path)
	if err != nil {
		return fmt.Errorf("reopen %s: %w", r.path, err)
	}
	r.mu.Lock()
	old := r.f
	if r.closed { // the balancer stopped meanwhile
		old = f
	} else {
		r.f = f
	}
	r.mu.Unlock()
	return old.Close()
}

// Close closes the file; a reopen after it closes what it opened. Safe to call twice.
func (r *reopenFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	return r.f.Close()
}

// reopenOnSIGUSR1 reopens r on every SIGUSR1 until ctx ends. It is the caller's goroutine.
func reopenOnSIGUSR1(ctx context.Context, r *reopenFile, log *slog.Logger) {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	for {
		select {
		case <-ctx.Done():
			return
		case <-usr1:
			if err := r.reopen(); err != nil {
				log.Error("SIGUSR1: cannot reopen the access log; still writing the old file", "path", r.path, "err", err)
				continue
			}
			log.Info("SIGUSR1: access log reopened", "path", r.path)
		}
	}
}
