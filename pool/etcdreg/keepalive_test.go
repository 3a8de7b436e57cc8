package etcdreg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
)

// stuckLeases is a lease client whose keep-alive streams take until release is closed to fail
// to open, as when etcd is unreachable. Only LeaseKeepAlive is ever called.
type stuckLeases struct {
	pb.LeaseClient
	entered chan struct{} // gets one value per open that has started
	release chan struct{}
}

var errUnreachable = errors.New("etcd unreachable")

func (l stuckLeases) LeaseKeepAlive(ctx context.Context, _ ...grpc.CallOption) (pb.Lease_LeaseKeepAliveClient, error) {
	l.entered <- struct{}{}
	select {
	case <-l.release:
		return nil, errUnreachable
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// A renewal that arrives while another is opening the stream waits no longer than its own
// deadline: opening is not done under the lock every renewal needs.
func TestRenewalDoesNotWaitOnAnothersOpen(t *testing.T) {
	leases := stuckLeases{entered: make(chan struct{}, 4), release: make(chan struct{})}
	k := &keepAlive{leases: leases, base: t.Context()}
	first := make(chan error, 1)
	go func() {
		_, err := k.renew(context.Background(), 1)
		first <- err
	}()
	<-leases.entered

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	second := make(chan error, 1)
	go func() {
		_, err := k.renew(ctx, 2)
		second <- err
	}()
	select {
	case err := <-second:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("second renewal: %v; want its deadline", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second renewal still waiting 10 s after its 50 ms deadline: it waits on the first one's open")
	}
	select {
	case err := <-first:
		t.Fatalf("first renewal ended (%v) before its open did", err)
	default:
	}

	close(leases.release)
	if err := <-first; !errors.Is(err, errUnreachable) {
		t.Errorf("first renewal: %v; want %v", err, errUnreachable)
	}
	k.close()
	if _, err := k.stream(context.Background()); err == nil {
		t.Error("a stream opened after close")
	}
}

// A call cut short by the Store's own Close fails as etcd being away would; it must neither
// turn the registry unhealthy nor log a loss.
func TestHealthIgnoresFailuresAfterClose(t *testing.T) {
	var logged strings.Builder
	h := newHealth(slog.New(slog.NewTextHandler(&logged, nil)))
	h.report(fmt.Errorf("%w: renew: %w", ErrUnavailable, context.DeadlineExceeded))
	if up, _ := h.healthy(); up || !strings.Contains(logged.String(), "etcd registry lost") {
		t.Fatalf("before close: healthy=%v, log %q; want unhealthy and the loss logged", up, logged.String())
	}
	h.report(nil)
	logged.Reset()
	h.close()
	h.report(fmt.Errorf("%w: renew: %w", ErrUnavailable, context.Canceled))
	if up, _ := h.healthy(); !up || logged.Len() != 0 {
		t.Fatalf("after close: healthy=%v, log %q; want healthy and nothing logged", up, logged.String())
	}
}
