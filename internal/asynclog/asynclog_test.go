package asynclog

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"log/slog"
)

// TestAsyncLogWritesEverythingByClose: records logged through the queue, with their attributes,
// are all written once close returns, in order.
func TestAsyncLogWritesEverythingByClose(t *testing.T) {
	var buf bytes.Buffer
	a := New(slog.NewTextHandler(&buf, nil), 0)
	log := a.Logger().With("service", "db")
	for i := range 100 {
		log.Info("backend down", "n", i)
	}
	a.Close()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 100 || !strings.Contains(lines[0], "service=db") || !strings.Contains(lines[99], "n=99") {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
}

// TestAsyncLogNeverBlocks: with the writer stuck, logging still returns; what did not fit is
// counted and reported at close.
func TestAsyncLogNeverBlocks(t *testing.T) {
	gate := make(chan struct{})
	var buf bytes.Buffer
	a := New(blockingHandler{Handler: slog.NewTextHandler(&buf, nil), gate: gate}, 0)
	log := a.Logger()
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		for range 3 * DefaultQueue {
			log.Info("flood")
		}
	}()
	select {
	case <-flooded:
	case <-time.After(10 * time.Second):
		t.Fatal("logging blocked while the writer was stuck")
	}
	close(gate)
	a.Close()
	if !strings.Contains(buf.String(), "log records dropped") || a.Dropped() == 0 {
		t.Fatalf("no drop reported: %d dropped", a.Dropped())
	}
}

type blockingHandler struct {
	slog.Handler
	gate chan struct{}
}

func (h blockingHandler) Handle(ctx context.Context, r slog.Record) error {
	<-h.gate
	return h.Handler.Handle(ctx, r)
}
