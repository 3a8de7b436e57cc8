package etcdreg

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Drain marks a backend draining for every instance: no new connections until Undrain,
// whatever its heartbeats say. The key keeps its lease.
func (s *Store) Drain(ctx context.Context, service, hostport string) error {
	return s.change(ctx, "drain", service, hostport, func(v *value) { v.Draining = true })
}

// Undrain ends Drain.
func (s *Store) Undrain(ctx context.Context, service, hostport string) error {
	return s.change(ctx, "undrain", service, hostport, func(v *value) { v.Draining = false })
}

// Remove revokes the backend's lease, which deletes its key at every instance. A later
// heartbeat registers it again.
func (s *Store) Remove(ctx context.Context, service, hostport string) error {
	return s.call(ctx, "remove", service, hostport, s.remove)
}

func (s *Store) remove(ctx context.Context, key string) error {
	resp, err := s.client.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	s.forget(key, 0)
	if lease := resp.Kvs[0].Lease; lease != 0 {
		err := s.revoke(ctx, lease)
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return fmt.Errorf("%w: %s: its lease ran out", ErrNotFound, key)
		}
		return err
	}
	_, err = s.client.Delete(ctx, key)
	return err
}

// change applies mutate to a backend's value within RequestTimeout.
func (s *Store) change(ctx context.Context, op, service, hostport string, mutate func(*value)) error {
	return s.call(ctx, op, service, hostport, func(ctx context.Context, key string) error {
		return s.update(ctx, key, mutate)
	})
}

// call runs one operation on a backend's key: the key checked, then f within RequestTimeout,
// its error classified (ErrUnavailable when etcd could not serve) and reported to the
// registry's health. ErrNotFound is the caller's answer, not etcd's state: it is neither.
func (s *Store) call(ctx context.Context, op, service, hostport string, f func(ctx context.Context, key string) error) error {
	key, err := keyOf(s.cfg.Prefix, service, hostport)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.requestTimeout())
	defer cancel()
	err = f(cctx, key)
	if errors.Is(err, ErrNotFound) {
		return err
	}
	err = classify(ctx, op+" "+key, err)
	s.health.report(err)
	return err
}

// maxUpdateTries bounds the read-compare-write rounds lost to concurrent writers.
const maxUpdateTries = 5

// update rewrites a key's value with mutate applied, under the lease the key already has, if
// nobody wrote the key in between; it reads and tries again otherwise.
func (s *Store) update(ctx context.Context, key string, mutate func(*value)) error {
	for range maxUpdateTries {
		resp, err := s.client.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if len(resp.Kvs) == 0 {
			return fmt.Errorf("%w: %s", ErrNotFound, key)
		}
		kv := resp.Kvs[0]
		v, err := decodeValue(kv.Value)
		if err != nil {
			return err
		}
		mutate(&v)
		var opts []clientv3.OpOption
		if kv.Lease != 0 {
			opts = append(opts, clientv3.WithLease(clientv3.LeaseID(kv.Lease)))
		}
		txn, err := s.client.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpPut(key, v.encode(), opts...)).
			Commit()
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return fmt.Errorf("%w: %s: its lease ran out", ErrNotFound, key)
		}
		if err != nil || txn.Succeeded {
			return err
		}
	}
	return fmt.Errorf("update %s: %d concurrent writes in a row", key, maxUpdateTries)
}
