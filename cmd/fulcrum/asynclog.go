package main

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
)

// asyncLog writes log records on a goroutine of its own. The pools log state changes (a
// backend down, up, forgotten) from inside Release and ReportDial, which the event-loop data
// plane calls on a loop's thread, where a log write must never block. A full queue drops the
// record and counts it; close writes what is queued and says how many were dropped. A record
// logged after close (a background loop that outlived the server) is written at once.
type asyncLog struct {
	next    slog.Handler
	queue   chan logItem
	done    chan struct{}
	dropped atomic.Uint64

	mu     sync.RWMutex // guards closed against a send on the closed queue
	closed bool
}

// logItem is one record with the handler (attributes, groups) it was logged through.
type logItem struct {
	h slog.Handler
	r slog.Record
}

// asyncQueue is how many records may wait; state changes come a few at a time.
const asyncQueue = 1024

func newAsyncLog(next slog.Handler) *asyncLog {
	a := &asyncLog{next: next, queue: make(chan logItem, asyncQueue), done: make(chan struct{})}
	go a.write()
	return a
}

// logger is a Logger whose records go through the queue.
func (a *asyncLog) logger() *slog.Logger { return slog.New(asyncHandler{a: a, next: a.next}) }

// write is the queue's one writer goroutine; it ends when close closes the queue.
func (a *asyncLog) write() {
	defer close(a.done)
	for it := range a.queue {
		it.h.Handle(context.Background(), it.r) // a failed log write has nowhere to be reported
	}
}

// close writes every queued record and stops the writer.
func (a *asyncLog) close() {
	a.mu.Lock()
	a.closed = true
	close(a.queue)
	a.mu.Unlock()
	<-a.done
	if n := a.dropped.Load(); n > 0 {
		slog.New(a.next).Warn("log records dropped: the log could not keep up", "dropped", n)
	}
}

// asyncHandler is the slog.Handler that queues.
type asyncHandler struct {
	a    *asyncLog
	next slog.Handler
}

func (h asyncHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h asyncHandler) Handle(ctx context.Context, r slog.Record) error {
	h.a.mu.RLock()
	defer h.a.mu.RUnlock()
	if h.a.closed {
		return h.next.Handle(ctx, r)
	}
	select {
	case h.a.queue <- logItem{h: h.next, r: r.Clone()}:
	default:
		h.a.dropped.Add(1)
	}
	return nil
}

func (h asyncHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return asyncHandler{a: h.a, next: h.next.WithAttrs(as)}
}

func (h asyncHandler) WithGroup(name string) slog.Handler {
	return asyncHandler{a: h.a, next: h.next.WithGroup(name)}
}
