package etcdreg

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// errStreamEnded is what a renewal waiting on a keep-alive stream gets when the stream ends.
var errStreamEnded = errors.New("lease keep-alive stream ended")

// keepAlive renews leases over one LeaseKeepAlive stream shared by every heartbeat of the
// instance. The client library's KeepAlive renews on its own schedule, whether or not the
// backend still heartbeats, and KeepAliveOnce opens a stream per call: neither is a heartbeat.
//
// A renewal registers a waiter for its lease ID, sends one request, and takes the next
// response for that ID. The stream is opened by the first renewal that needs it, and replaced
// when it fails or stays silent past a renewal's deadline.
type keepAlive struct {
	leases pb.LeaseClient
	base   context.Context // the Store's life: ends every stream at Close

	mu  sync.Mutex // guards cur, opening and closed
	cur *kaStream  // the open stream; nil: none
	// opening is closed when the open under way ends; nil: none is under way.
	opening chan struct{}
	// closed: close has run; no stream opens after it.
	closed bool
	// receiving counts the streams' receive goroutines; close waits for them.
	receiving sync.WaitGroup
}

// kaStream is one stream and the renewals waiting on it. Its receive goroutine owns the
// receiving side and ends when the stream does (an error, or cancel).
type kaStream struct {
	stream   pb.Lease_LeaseKeepAliveClient
	cancel   context.CancelFunc
	sendMu   sync.Mutex   // gRPC streams allow one sender at a time
	lastRecv atomic.Int64 // unix nanoseconds of the last response

	mu      sync.Mutex             // guards waiters and err
	waiters map[int64][]chan int64 // lease ID → renewals waiting, each told the TTL once
	err     error                  // why the stream ended; nil while open
}

// renew sends one keep-alive for lease id and reports whether the lease still exists. A lease
// that has expired or been revoked answers with a TTL of 0 or less.
func (k *keepAlive) renew(ctx context.Context, id int64) (alive bool, err error) {
	for attempt := 0; ; attempt++ {
		st, err := k.stream(ctx)
		if err != nil {
			return false, fmt.Errorf("open lease stream: %w", err)
		}
		ttl, broken, err := st.renew(ctx, id)
		if err == nil {
			return ttl > 0, nil
		}
		if broken {
			k.retire(st)
		}
		if attempt == 1 || ctx.Err() != nil {
			return false, fmt.Errorf("renew lease %x: %w", id, err)
		}
	}
}

// stream returns the open stream, opening one if there is none. The open runs outside mu, so
// that a slow one (etcd unreachable) holds up no other renewal beyond its own ctx: renewals
// that arrive meanwhile wait for it, or for their ctx, whichever ends first. The stream, once
// open, lives until it fails or the Store closes.
func (k *keepAlive) stream(ctx context.Context) (*kaStream, error) {
	for {
		k.mu.Lock()
		cur, opening, closed := k.cur, k.opening, k.closed
		if cur == nil && opening == nil && !closed {
			k.opening = make(chan struct{})
		}
		k.mu.Unlock()
		switch {
		case cur != nil:
			return cur, nil
		case closed:
			return nil, errors.New("store closed")
		case opening == nil:
			return k.open(ctx)
		}
		select {
		case <-opening: // opened or failed: look again
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// open opens a stream for the renewal that took k.opening, bounded by its ctx, makes it the
// open one unless the Store closed meanwhile, and wakes the renewals waiting for it.
func (k *keepAlive) open(ctx context.Context) (*kaStream, error) {
	sctx, cancel := context.WithCancel(clientv3.WithRequireLeader(k.base))
	stop := context.AfterFunc(ctx, cancel)
	// WaitForReady, as clientv3 passes on every call: while the connection is reconnecting
	// the open waits (up to ctx) instead of failing at once.
	stream, err := k.leases.LeaseKeepAlive(sctx, grpc.WaitForReady(true))
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	close(k.opening)
	k.opening = nil
	if err == nil && k.closed {
		err = errors.New("store closed")
	}
	if err != nil {
		cancel()
		return nil, err
	}
	st := &kaStream{stream: stream, cancel: cancel, waiters: make(map[int64][]chan int64)}
	st.lastRecv.Store(time.Now().UnixNano())
	k.cur = st
	k.receiving.Add(1) // under mu and before closed is set: close's Wait comes after
	go func() {
		defer k.receiving.Done()
		st.receive()
	}()
	return st, nil
}

// retire ends st, if it is still the open stream, so that the next renewal opens another.
func (k *keepAlive) retire(st *kaStream) {
	k.mu.Lock()
	if k.cur == st {
		k.cur = nil
	}
	k.mu.Unlock()
	st.cancel()
}

// close ends the open stream and waits for every stream's receive goroutine (retired ones
// were cancelled already) to end.
func (k *keepAlive) close() {
	k.mu.Lock()
	st := k.cur
	k.cur, k.closed = nil, true
	k.mu.Unlock()
	if st != nil {
		st.cancel()
	}
	k.receiving.Wait()
}

// renew sends one request for id and waits for its answer, the stream's end or ctx. broken
// says the stream failed, or stayed silent since the request: it should be replaced.
func (s *kaStream) renew(ctx context.Context, id int64) (ttl int64, broken bool, err error) {
	ch, err := s.wait(id)
	if err != nil {
		return 0, true, err
	}
	sent := time.Now().UnixNano()
	s.sendMu.Lock()
	err = s.stream.Send(&pb.LeaseKeepAliveRequest{ID: id})
	s.sendMu.Unlock()
	if err != nil {
		s.drop(id, ch)
		return 0, true, fmt.Errorf("send: %w", err)
	}
	select {
	case ttl, ok := <-ch:
		if !ok {
			return 0, true, s.ended()
		}
		return ttl, false, nil
	case <-ctx.Done():
		s.drop(id, ch)
		silent := s.lastRecv.Load() <= sent // when it answers others, only this call ran late
		return 0, silent, fmt.Errorf("no answer: %w", ctx.Err())
	}
}

// wait registers a waiter for id; its channel gets the TTL, or is closed when the stream ends.
func (s *kaStream) wait(id int64) (chan int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	ch := make(chan int64, 1)
	s.waiters[id] = append(s.waiters[id], ch)
	return ch, nil
}

// drop forgets a waiter that no longer waits.
func (s *kaStream) drop(id int64, ch chan int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiters[id]
	for i, w := range ws {
		if w == ch {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(s.waiters, id)
	} else {
		s.waiters[id] = ws
	}
}

func (s *kaStream) ended() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// receive reads responses until the stream ends, handing each to the renewals waiting for its
// lease; then it fails every renewal still waiting.
func (s *kaStream) receive() {
	for {
		resp, err := s.stream.Recv()
		if err != nil {
			s.end(err)
			return
		}
		s.lastRecv.Store(time.Now().UnixNano())
		s.mu.Lock()
		for _, ch := range s.waiters[resp.ID] {
			ch <- resp.TTL
		}
		delete(s.waiters, resp.ID)
		s.mu.Unlock()
	}
}

func (s *kaStream) end(err error) {
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = fmt.Errorf("%w: %w", errStreamEnded, err)
	for id, ws := range s.waiters {
		for _, ch := range ws {
			close(ch)
		}
		delete(s.waiters, id)
	}
}
