// Package asynclog is a log/slog handler that never blocks its caller: records wait in a
// bounded queue that one goroutine of its own writes out. The pools log state changes (a
// backend down, up, forgotten) from inside Release and ReportDial, and the event loops log
// failures, both on an event loop's thread, where a log write must never block.
//
//	q := asynclog.New(slog.Default().Handler(), asynclog.DefaultQueue)
//	defer q.Close() // writes what is queued, then says how many records were dropped
//	log := q.Logger()               // records for the handler q was made with
//	other := q.Wrap(h)              // records for another handler, through the same queue
//
// A full queue drops the record and counts it: a caller never waits for the log. A record
// logged after Close (a background loop that outlived the server) is written at once.
package asynclog

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
)

// DefaultQueue is how many records may wait when the logging is occasional (state changes come
// a few at a time).
const DefaultQueue = 1024

// Queue owns the queue and its writer goroutine, which ends with Close.
type Queue struct {
	next    slog.Handler // where Logger's records go, and the report of drops at Close
	queue   chan item
	done    chan struct{}
	dropped atomic.Uint64

	mu     sync.RWMutex // guards closed against a send on the closed queue
	closed bool
}

// item is one record with the handler (attributes, groups) it was logged through.
type item struct {
	h slog.Handler
	r slog.Record
}

// New starts a queue of size records (DefaultQueue when size is 0 or less) whose Logger writes
// to next.
func New(next slog.Handler, size int) *Queue {
	if size <= 0 {
		size = DefaultQueue
	}
	q := &Queue{next: next, queue: make(chan item, size), done: make(chan struct{})}
	go q.write()
	return q
}

// Logger is a Logger whose records go through the queue to the handler q was made with.
func (q *Queue) Logger() *slog.Logger { return slog.New(q.Wrap(q.next)) }

// Wrap returns a handler that queues records for h: several loggers can share one queue.
func (q *Queue) Wrap(h slog.Handler) slog.Handler { return handler{q: q, next: h} }

// Dropped is how many records did not fit in the queue so far.
func (q *Queue) Dropped() uint64 { return q.dropped.Load() }

// write is the queue's one writer goroutine; it ends when Close closes the queue.
func (q *Queue) write() {
	defer close(q.done)
	for it := range q.queue {
		it.h.Handle(context.Background(), it.r) // a failed log write has nowhere to be reported
	}
}

// Close writes every queued record, stops the writer, and reports through the Queue's own
// handler how many records were dropped, if any. Call it once.
func (q *Queue) Close() {
	q.mu.Lock()
	q.closed = true
	close(q.queue)
	q.mu.Unlock()
	<-q.done
	if n := q.dropped.Load(); n > 0 {
		slog.New(q.next).Warn("log records dropped: the log could not keep up", "dropped", n)
	}
}

// handler is the slog.Handler that queues.
type handler struct {
	q    *Queue
	next slog.Handler
}

func (h handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h handler) Handle(ctx context.Context, r slog.Record) error {
	h.q.mu.RLock()
	defer h.q.mu.RUnlock()
	if h.q.closed {
		return h.next.Handle(ctx, r)
	}
	select {
	case h.q.queue <- item{h: h.next, r: r.Clone()}:
	default:
		h.q.dropped.Add(1)
	}
	return nil
}

func (h handler) WithAttrs(as []slog.Attr) slog.Handler {
	return handler{q: h.q, next: h.next.WithAttrs(as)}
}

func (h handler) WithGroup(name string) slog.Handler {
	return handler{q: h.q, next: h.next.WithGroup(name)}
}
