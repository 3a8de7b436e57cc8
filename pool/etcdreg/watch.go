package etcdreg

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Sink receives the registry as etcd holds it. Watch calls it from one goroutine, in the
// order of etcd's revisions, never two calls at once; a call should return quickly (it holds
// up the next event). Nothing is delivered while etcd is unreachable, so a sink keeps the
// last set it was given, however long the outage.
type Sink interface {
	// Resync replaces everything the sink holds with all: every backend under the prefix at
	// one revision. A backend the sink holds and all lacks is gone. It is the first call, and
	// follows every re-list (after a compaction, a lost watch or etcd's return).
	Resync(all []Entry)
	// Upsert adds a backend, or changes its weight or draining flag.
	Upsert(e Entry)
	// Delete removes a backend: its lease ran out or was revoked (Remove).
	Delete(service, hostport string)
}

// Watch keeps sink in step with etcd until ctx ends, and returns ctx's error. It lists the
// prefix at a revision R, hands the list to Resync, watches from R+1, and lists again when the
// watch is compacted past or ends, and whenever etcd comes back after being unreachable.
// Expiry is etcd's: a backend leaves the sink when its key is deleted, never by a local clock.
// Keys or values that cannot be read are logged and skipped. Close ends it as well.
func (s *Store) Watch(ctx context.Context, sink Sink) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(s.keep.base, stop)() // Close ends the watch too
	retry := newRetryDelay(100*time.Millisecond, 2*time.Second)
	for {
		rev, err := s.list(ctx, sink)
		if err == nil {
			retry.reset()
			err = s.follow(ctx, sink, rev+1)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.cfg.logger().Debug("etcd watch: list again", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry.next()):
		}
	}
}

// list reads every key under the prefix at one revision, gives them to Resync, and returns
// the revision.
func (s *Store) list(ctx context.Context, sink Sink) (int64, error) {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.requestTimeout())
	defer cancel()
	resp, err := s.client.Get(cctx, s.cfg.Prefix+"/", clientv3.WithPrefix())
	err = classify(ctx, "list "+s.cfg.Prefix, err)
	s.health.report(err)
	if err != nil {
		return 0, err
	}
	all := make([]Entry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if e, err := entryOf(s.cfg.Prefix, kv.Key, kv.Value); err == nil {
			all = append(all, e)
		} else {
			s.cfg.logger().Warn("etcd registry: unreadable key skipped", "key", string(kv.Key), "err", err)
		}
	}
	sink.Resync(all)
	return resp.Header.Revision, nil
}

// follow delivers the changes from revision rev on, until the watch fails (a compaction, a
// member without a leader), ctx ends, or etcd comes back after a loss: each of those calls for
// a new list. While etcd is unreachable the client keeps trying and follow keeps waiting.
func (s *Store) follow(ctx context.Context, sink Sink, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	events := s.client.Watch(wctx, s.cfg.Prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithPrevKV())
	_, changed := s.health.healthy()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
			// Healthy after a change means etcd went away and came back, however briefly.
			var up bool
			if up, changed = s.health.healthy(); up {
				return errors.New("etcd is back")
			}
		case resp, ok := <-events:
			if !ok {
				return fmt.Errorf("watch closed")
			}
			if err := resp.Err(); err != nil {
				return fmt.Errorf("watch: %w", err)
			}
			s.deliver(sink, resp.Events)
		}
	}
}

// deliver hands one watch response's events to the sink, and brings what this Store knows of
// the keys it heartbeats up to date: a key deleted (by anyone, however) is read again at its
// next heartbeat, and a key rewritten elsewhere is renewed under its new lease and compared
// with its new weight.
func (s *Store) deliver(sink Sink, events []*clientv3.Event) {
	for _, ev := range events {
		key := string(ev.Kv.Key)
		if ev.Type == clientv3.EventTypeDelete {
			var lease int64 // without the previous value, whatever lease it had
			if ev.PrevKv != nil {
				lease = ev.PrevKv.Lease
			}
			s.forget(key, lease)
			if service, hostport, err := splitKey(s.cfg.Prefix, key); err == nil {
				sink.Delete(service, hostport)
			}
			continue
		}
		e, err := entryOf(s.cfg.Prefix, ev.Kv.Key, ev.Kv.Value)
		if err != nil {
			s.cfg.logger().Warn("etcd registry: unreadable key skipped", "key", key, "err", err)
			continue
		}
		s.observe(key, ev.Kv.Lease, e.Weight)
		sink.Upsert(e)
	}
}

// retryDelay is a delay that doubles from lo to hi and returns to lo on reset.
type retryDelay struct {
	lo, hi, cur time.Duration
}

func newRetryDelay(lo, hi time.Duration) *retryDelay { return &retryDelay{lo: lo, hi: hi} }

func (b *retryDelay) next() time.Duration {
	b.cur = min(max(b.cur*2, b.lo), b.hi)
	return b.cur
}

func (b *retryDelay) reset() { b.cur = 0 }
