package etcdreg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fulcrumlb/fulcrum/pool"
)

// ErrUnavailable marks a call that etcd did not answer in time, or answered that it cannot
// serve (no leader, no quorum). The call may or may not have taken effect. It is
// pool.ErrUnavailable, so that callers of a pool.Registry recognise it.
var ErrUnavailable = pool.ErrUnavailable

// health is whether etcd answered the last call. Every call reports its outcome; the first
// failure after a success logs the loss once, the first success after a failure logs the
// recovery once.
type health struct {
	logger *slog.Logger

	mu      sync.Mutex
	up      bool
	changed chan struct{} // closed, and replaced, at every transition
	closed  bool          // the Store is closing: what its calls fail with is not etcd's state
}

// close stops recording: calls cut short by the Store's own Close must not log a loss.
func (h *health) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
}

func newHealth(logger *slog.Logger) *health {
	return &health{logger: logger, up: true, changed: make(chan struct{})}
}

// healthy reports the last outcome, and a channel closed at the next transition.
func (h *health) healthy() (bool, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.up, h.changed
}

// report records the outcome of one call: success (nil) or an unavailable error turn the
// state; other errors (a failed comparison, a refused permission) say nothing about it.
func (h *health) report(err error) {
	up := err == nil
	if !up && !errors.Is(err, ErrUnavailable) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.up == up || h.closed {
		return
	}
	h.up = up
	close(h.changed)
	h.changed = make(chan struct{})
	if up {
		h.logger.Info("etcd registry back")
	} else {
		h.logger.Warn("etcd registry lost", "err", err)
	}
}

// classify wraps an error of a call to etcd for the caller: ErrUnavailable when etcd could not
// serve (deadline passed, member unreachable, no leader). parent is the caller's context:
// when it has ended, the error is the caller's doing, not etcd's, and is returned as it is.
func classify(parent context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if parent.Err() != nil {
		return fmt.Errorf("etcd %s: %w", op, err)
	}
	if unavailable(err) {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
	}
	return fmt.Errorf("etcd %s: %w", op, err)
}

func unavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, errStreamEnded) {
		return true
	}
	code := status.Code(err)
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	}
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted:
		return true
	}
	return false
}
