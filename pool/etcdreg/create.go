package etcdreg

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// find reads a key this instance does not know: another instance may hold it. When etcd has
// no such key, it creates it if create is set, and is ErrNotFound if not. It returns the key's
// lease and weight, and whether it created it.
func (s *Store) find(ctx context.Context, key string, addr netip.Addr, weight int, create bool) (known, bool, error) {
	resp, err := s.client.Get(ctx, key)
	if err != nil {
		return known{}, false, fmt.Errorf("read: %w", err)
	}
	if len(resp.Kvs) == 1 {
		return knownOf(resp.Kvs[0]), false, nil
	}
	if !create {
		return known{}, false, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	return s.create(ctx, key, addr, weight)
}

// create grants a lease and puts the key with it only if the key does not exist. When another
// instance created it first, this one adopts the winner's lease and revokes its own, so that a
// backend has one lease however many instances it heartbeats to.
func (s *Store) create(ctx context.Context, key string, addr netip.Addr, weight int) (known, bool, error) {
	grant, err := s.client.Grant(ctx, s.cfg.leaseSeconds())
	if err != nil {
		return known{}, false, fmt.Errorf("grant lease: %w", err)
	}
	lease := int64(grant.ID)
	v := value{Weight: max(weight, 1), Created: time.Now().UTC()}
	if addr.IsValid() {
		v.Address = addr.String()
	}
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, v.encode(), clientv3.WithLease(grant.ID))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		// The put may have been applied: revoking would delete the key. Left alone, the lease
		// runs out within a TTL, or holds the key, where the next heartbeat finds it.
		return known{}, false, fmt.Errorf("create: %w", err)
	}
	if resp.Succeeded {
		k := known{lease: lease, weight: v.Weight}
		s.remember(key, k)
		return k, true, nil
	}
	if err := s.revoke(ctx, lease); err != nil {
		s.cfg.logger().Warn("etcd: revoke an unused lease; it runs out by itself", "lease", fmt.Sprintf("%x", lease), "err", err)
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		return known{}, false, errors.New("create: lost the race to a key already gone")
	}
	return knownOf(kvs[0]), false, nil
}

func (s *Store) revoke(ctx context.Context, lease int64) error {
	_, err := s.client.Revoke(ctx, clientv3.LeaseID(lease))
	return err
}

// knownOf reads the lease and weight of a key held in etcd. A value that cannot be read keeps
// weight 0, so that the next heartbeat that names a weight rewrites it.
func knownOf(kv *mvccpb.KeyValue) known {
	v, _ := decodeValue(kv.Value)
	return known{lease: kv.Lease, weight: v.Weight}
}
