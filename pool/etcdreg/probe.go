package etcdreg

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// probe reads one key under the prefix every ProbeInterval, so that Healthy turns when etcd
// is lost or back even while no backend heartbeats; it also forgets keys heartbeaten here no
// more. It is the Store's goroutine and returns when ctx ends (Close).
func (s *Store) probe(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.cfg.probeInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.health.report(s.ping(ctx))
			s.forgetStale(now)
		}
	}
}

// ping makes one linearizable read, which needs a leader and a quorum.
func (s *Store) ping(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.requestTimeout())
	defer cancel()
	_, err := s.client.Get(cctx, s.cfg.Prefix+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(1))
	return classify(ctx, "probe", err)
}
