package etcdreg

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNotFound marks a backend that etcd does not hold (never registered, removed or expired).
var ErrNotFound = errors.New("backend not registered in etcd")

// Store writes the backends of one balancer instance to etcd and keeps their leases alive.
// Several instances, each with its own Store, share the keys: any of them may create, renew,
// drain or remove any backend. Its methods are safe for concurrent use.
type Store struct {
	cfg    Config
	client *clientv3.Client
	keep   *keepAlive
	health *health

	mu    sync.Mutex       // guards known
	known map[string]known // key → the lease this instance last saw holding it

	cancel context.CancelFunc // ends the probe goroutine and the keep-alive stream
	done   chan struct{}      // closed when the probe goroutine has returned
	once   sync.Once          // makes Close safe to call twice
}

// known is what a Store remembers of a key it has heartbeaten, so that a heartbeat is one
// keep-alive message and no read.
type known struct {
	lease  int64
	weight int
	seen   time.Time // last heartbeat here; a key unheard of for TTL is forgotten
}

// Open checks cfg and connects. It does not wait for etcd to answer (unless User is set:
// then it authenticates, within RequestTimeout): Healthy says whether it does.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	cc, err := cfg.clientConfig()
	if err != nil {
		return nil, err
	}
	client, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %v: %w", cfg.Endpoints, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		cfg:    cfg,
		client: client,
		keep:   &keepAlive{leases: pb.NewLeaseClient(client.ActiveConnection()), base: ctx},
		health: newHealth(cfg.logger()),
		known:  make(map[string]known),
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go s.probe(ctx)
	return s, nil
}

// Close stops the probe and the keep-alive stream and closes the connection. The backends'
// leases are left to run out or be renewed by other instances. It is safe to call twice.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		s.health.close()
		s.cancel()
		<-s.done
		s.keep.close()
		err = s.client.Close()
	})
	return err
}

// Kind names the registry: "etcd".
func (s *Store) Kind() string { return "etcd" }

// Healthy reports whether etcd answered the last call (a write, a read or the periodic probe).
func (s *Store) Healthy() bool {
	up, _ := s.health.healthy()
	return up
}

// Heartbeat renews the lease of a backend etcd holds, as pool.Registry's Heartbeat does
// locally, and reports whether etcd held it. It never creates: a backend etcd does not hold
// (never registered, removed, or its lease ran out) is left alone and known is false; the
// caller registers it (Register). A weight of 0 keeps the current weight; another replaces it.
func (s *Store) Heartbeat(ctx context.Context, service, hostport string, weight int) (known bool, err error) {
	if err := pool.CheckWeight(weight); err != nil {
		return false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	err = s.call(ctx, "heartbeat", service, hostport, func(ctx context.Context, key string) error {
		_, err := s.heartbeat(ctx, key, netip.Addr{}, weight, false)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Register keeps a backend registered: it renews the backend's lease or, when the backend has
// no key or its lease has run out, grants a new lease and creates the key, which carries addr
// (Entry.Address), the address every instance dials for a name the caller resolved and
// checked. addr is ignored for a backend etcd already holds, and may be the zero Addr. A
// weight of 0 keeps the current weight (1 for a new backend); another replaces it. It
// reports whether this call created the key.
func (s *Store) Register(ctx context.Context, service, hostport string, addr netip.Addr, weight int) (created bool, err error) {
	if err := pool.CheckWeight(weight); err != nil {
		return false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	err = s.call(ctx, "heartbeat", service, hostport, func(ctx context.Context, key string) error {
		created, err = s.heartbeat(ctx, key, addr, weight, true)
		return err
	})
	return created, err
}

// maxLeaseTries bounds how often a heartbeat finds the lease it was about to renew gone.
const maxLeaseTries = 3

// heartbeat renews key's lease; a key etcd does not hold is created when create is set, and
// is ErrNotFound when not. It reports whether it created the key.
func (s *Store) heartbeat(ctx context.Context, key string, addr netip.Addr, weight int, create bool) (bool, error) {
	for range maxLeaseTries {
		k, ok := s.lookup(key)
		if !ok {
			found, created, err := s.find(ctx, key, addr, weight, create)
			if err != nil || created {
				return created, err
			}
			k = found
		}
		alive, err := s.renew(ctx, k)
		if err != nil {
			return false, err
		}
		if !alive {
			s.forget(key, k.lease)
			if !create {
				return false, fmt.Errorf("%w: %s: its lease ran out", ErrNotFound, key)
			}
			continue
		}
		s.remember(key, k)
		if weight != 0 && weight != k.weight {
			return false, s.setWeight(ctx, key, weight)
		}
		return false, nil
	}
	return false, fmt.Errorf("lease of %s ended %d times in a row", key, maxLeaseTries)
}

// renew keeps k's lease alive; a key put without a lease has nothing to renew.
func (s *Store) renew(ctx context.Context, k known) (bool, error) {
	if k.lease == 0 {
		return true, nil
	}
	return s.keep.renew(ctx, k.lease)
}

// setWeight writes a new weight, keeping the key's lease and draining flag.
func (s *Store) setWeight(ctx context.Context, key string, weight int) error {
	err := s.update(ctx, key, func(v *value) { v.Weight = weight })
	if err == nil {
		s.mu.Lock()
		if k, ok := s.known[key]; ok {
			k.weight = weight
			s.known[key] = k
		}
		s.mu.Unlock()
	}
	return err
}

func (s *Store) lookup(key string) (known, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.known[key]
	return k, ok
}

func (s *Store) remember(key string, k known) {
	k.seen = time.Now()
	s.mu.Lock()
	s.known[key] = k
	s.mu.Unlock()
}

// forget drops what this instance knows of key, if it still names lease (0: whatever it names).
func (s *Store) forget(key string, lease int64) {
	s.mu.Lock()
	if k, ok := s.known[key]; ok && (lease == 0 || k.lease == lease) {
		delete(s.known, key)
	}
	s.mu.Unlock()
}

// observe updates what this instance knows of a key it heartbeats from a change seen in
// etcd; keys it does not heartbeat stay unknown.
func (s *Store) observe(key string, lease int64, weight int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.known[key]; ok {
		k.lease, k.weight = lease, weight
		s.known[key] = k
	}
}

// forgetStale drops keys not heartbeaten here for a TTL: their lease has run out unless
// another instance renews it, and the next heartbeat here will read the key again.
func (s *Store) forgetStale(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, k := range s.known {
		if now.Sub(k.seen) > s.cfg.TTL {
			delete(s.known, key)
		}
	}
}
