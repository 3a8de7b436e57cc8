package etcdreg

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/fulcrumlb/fulcrum/pool"
)

// Shared is one service's registry as the admin API sees it when the registry lives in etcd:
// every change is written to etcd first, and to the local pool only once etcd has taken it,
// so that a change etcd refused never shows here; reads are the local pool's, which a Mirror
// keeps equal to etcd. It implements pool.Registry.
//
// Connection counts, health and draining's effect on picking stay in the local pool. The pool
// must not expire backends by its own clock (its TTL is zero): a backend leaves when etcd
// deletes its key.
type Shared struct {
	store   *Store
	service string
	local   *pool.Pool
}

var _ pool.Registry = (*Shared)(nil)

// Service returns the registry of one service, over its local pool.
func (s *Store) Service(name string, local *pool.Pool) *Shared {
	return &Shared{store: s, service: name, local: local}
}

// Register writes a heartbeat to etcd (creating the backend there when nobody has), then
// registers it in the local pool, with the dial address the caller resolved. It refuses a new
// backend the local pool has no room for before anything reaches etcd.
func (r *Shared) Register(a pool.Address, weight int) (bool, error) {
	if err := pool.CheckWeight(weight); err != nil {
		return false, err
	}
	if err := r.local.CheckRoom(a.Key()); err != nil {
		return false, err
	}
	created, err := r.store.Register(context.Background(), r.service, a.Key(), checkedIP(a), weight)
	if err != nil {
		return false, err
	}
	if _, err := r.local.Register(a, weight); err != nil {
		return created, err
	}
	return created, nil
}

// Heartbeat renews a backend this instance knows (from etcd), in etcd and then locally. An
// unknown backend is left alone, as pool.Registry says: the caller registers it.
func (r *Shared) Heartbeat(key string, weight int) (bool, error) {
	if err := pool.CheckWeight(weight); err != nil {
		return false, err
	}
	st, ok := r.local.Lookup(key)
	if !ok || st.State == pool.StateRemoved {
		return false, nil
	}
	// etcd may have lost the key (an outage longer than the lease, a delete the watch has not
	// brought yet): a key made again carries the address checked when the backend came.
	if _, err := r.store.Register(context.Background(), r.service, key, checkedIP(st.Address), weight); err != nil {
		return true, err
	}
	return r.local.Heartbeat(key, weight)
}

// Lookup implements pool.Registry from the local pool.
func (r *Shared) Lookup(key string) (pool.Status, bool) { return r.local.Lookup(key) }

// Snapshot implements pool.Registry from the local pool.
func (r *Shared) Snapshot() []pool.Status { return r.local.Snapshot() }

// Deregister revokes the backend's lease, which removes it at every instance, then removes it
// here at once rather than when the watch brings the deletion back.
func (r *Shared) Deregister(key string) error {
	return r.change(key, r.store.Remove, r.local.Deregister)
}

// Drain marks the backend draining in etcd, for every instance, then here.
func (r *Shared) Drain(key string) error {
	return r.change(key, r.store.Drain, r.local.Drain)
}

// Undrain ends Drain in etcd, then here.
func (r *Shared) Undrain(key string) error {
	return r.change(key, r.store.Undrain, r.local.Undrain)
}

// change applies a change to etcd, then to the local pool. A backend etcd does not hold is
// pool.ErrUnknownBackend; one etcd holds and the pool has not heard of yet is not an error.
func (r *Shared) change(key string, remote func(context.Context, string, string) error, local func(string) error) error {
	err := remote(context.Background(), r.service, key)
	if errors.Is(err, ErrNotFound) {
		local(key) // gone from etcd: gone here too, whatever the watch has delivered so far
		return fmt.Errorf("%w: %w", pool.ErrUnknownBackend, err)
	}
	if err != nil {
		return err
	}
	if err := local(key); err != nil && !errors.Is(err, pool.ErrUnknownBackend) {
		return err
	}
	return nil
}

// checkedIP is the address the admin API checked for a backend named by a host name, which
// its etcd value carries (Entry.Address); the zero Addr for an address literal.
func checkedIP(a pool.Address) netip.Addr {
	if _, err := netip.ParseAddr(a.Host); err == nil {
		return netip.Addr{}
	}
	return a.IP
}
