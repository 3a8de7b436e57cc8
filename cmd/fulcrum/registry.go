package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/pool"
	"github.com/fulcrumlb/fulcrum/pool/etcdreg"
)

// Several balancers can share one registry in etcd: --registry etcd://... makes every
// registration, drain and removal an etcd write that each balancer's watch brings into its
// own pools, and a backend's liveness an etcd lease that any balancer's heartbeat renews.
// Connection counts, health checks and least-connections stay local: sharing them would cost
// an etcd round trip per connection.

func registryFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "registry", Value: "memory", Usage: "where backends are registered: memory (this process), or etcd://HOST:PORT[,HOST:PORT...]/PREFIX to share them with every balancer on that etcd cluster", EnvVars: env("REGISTRY")},
		&cli.StringFlag{Name: "etcd-cacert", Usage: "PEM `FILE` of the authorities that sign the etcd members' certificates (turns TLS on)", EnvVars: env("ETCD_CACERT")},
		&cli.StringFlag{Name: "etcd-cert", Usage: "PEM client certificate `FILE` for etcd (turns TLS on; with --etcd-key)", EnvVars: env("ETCD_CERT")},
		&cli.StringFlag{Name: "etcd-key", Usage: "PEM key `FILE` of --etcd-cert", EnvVars: env("ETCD_KEY")},
		&cli.StringFlag{Name: "etcd-user", Usage: "etcd user `NAME`; the password is read from " + etcdreg.PasswordEnv, EnvVars: env("ETCD_USER")},
	}
}

// parseRegistry reads --registry and the --etcd-* flags: nil for the in-memory registry. With
// etcd, --ttl is every backend's lease and must be at least etcd's shortest.
func parseRegistry(c *cli.Context, ttl time.Duration) (*etcdreg.Config, error) {
	url := c.String("registry")
	if url == "memory" || url == "" {
		for _, name := range []string{"etcd-cacert", "etcd-cert", "etcd-key", "etcd-user"} {
			if c.IsSet(name) {
				return nil, fmt.Errorf("--%s needs --registry etcd://...", name)
			}
		}
		return nil, nil
	}
	ec, err := etcdreg.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("--registry: %w", err)
	}
	if ttl < etcdreg.MinTTL {
		return nil, fmt.Errorf("--ttl %s with --registry etcd: etcd leases last at least %s (and --ttl 0, forever, has no lease)", ttl, etcdreg.MinTTL)
	}
	ec.TTL = ttl
	ec.CACert, ec.Cert, ec.Key = c.String("etcd-cacert"), c.String("etcd-cert"), c.String("etcd-key")
	ec.User, ec.Password = c.String("etcd-user"), os.Getenv(etcdreg.PasswordEnv)
	if err := ec.Check(); err != nil {
		return nil, fmt.Errorf("--registry: %w", err)
	}
	return &ec, nil
}

// localTTL is the TTL of the local pools: with a shared registry expiry is etcd's, and a local
// clock must never empty a pool that etcd (perhaps unreachable) still holds.
func (cfg *config) localTTL() time.Duration {
	if cfg.registry != nil {
		return 0
	}
	return cfg.ttl
}

// sharedRegistry is a running balancer's etcd registry: the store and the watch that keeps
// every service's pool equal to etcd. The watch goroutine is its own; close ends it.
type sharedRegistry struct {
	store  *etcdreg.Store
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
}

// firstListWait is how long a start waits for etcd's first answer before it says loudly that
// it serves no registered backend (it goes on starting and waiting).
const firstListWait = 3 * time.Second

// startShared connects to etcd and starts the watch; nil (and no error) for the in-memory
// registry. restored says whether the pools already hold backends from a state file or the
// parent process; if not, an etcd that does not answer at start is an ERROR.
func startShared(cfg *config, services []*servicePool, restored bool) (*sharedRegistry, error) {
	if cfg.registry == nil {
		return nil, nil
	}
	ec := *cfg.registry
	ec.Logger = cfg.log
	st, err := etcdreg.Open(ec)
	if err != nil {
		return nil, err
	}
	pools := make(map[string]*pool.Pool, len(services))
	for _, s := range services {
		pools[s.cfg.name] = s.pool
	}
	ctx, cancel := context.WithCancel(context.Background())
	sr := &sharedRegistry{store: st, log: cfg.log, cancel: cancel, done: make(chan struct{})}
	sink := &firstList{Mirror: &etcdreg.Mirror{Pools: pools, Logger: cfg.log}, listed: make(chan struct{})}
	go sr.watch(ctx, sink, restored)
	return sr, nil
}

// watch runs the watch until ctx ends. Unless the pools were restored, it first waits up to
// firstListWait for etcd's first answer and logs an ERROR if none came: until then every
// registered backend is unknown here.
func (sr *sharedRegistry) watch(ctx context.Context, sink *firstList, restored bool) {
	defer close(sr.done)
	var waiting sync.WaitGroup
	defer waiting.Wait()
	if !restored {
		waiting.Go(func() { sr.warnUnlisted(ctx, sink.listed) })
	}
	if err := sr.store.Watch(ctx, sink); err != nil && !errors.Is(err, context.Canceled) {
		sr.log.Error("etcd registry watch stopped", "err", err)
	}
}

func (sr *sharedRegistry) warnUnlisted(ctx context.Context, listed <-chan struct{}) {
	t := time.NewTimer(firstListWait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-listed:
	case <-t.C:
		sr.log.Error("etcd registry unreachable at start and no state file to restore: fulcrum serves no backends until etcd answers (static ones aside)", "waited", firstListWait)
	}
}

// firstList is the watch's sink: the Mirror, and a channel closed by the first full list.
type firstList struct {
	*etcdreg.Mirror
	once   sync.Once
	listed chan struct{}
}

func (f *firstList) Resync(all []etcdreg.Entry) {
	f.Mirror.Resync(all)
	f.once.Do(func() { close(f.listed) })
}

// close stops the watch, then closes the connection; the backends' leases are left to the
// other balancers' heartbeats. Safe on nil.
func (sr *sharedRegistry) close() {
	if sr == nil {
		return
	}
	sr.cancel()
	<-sr.done
	if err := sr.store.Close(); err != nil {
		sr.log.Warn("closing the etcd registry", "err", err)
	}
}

// registry is what the admin API changes for service s: its pool, or its pool shared through
// etcd.
func (sr *sharedRegistry) registry(s *servicePool) pool.Registry {
	if sr == nil {
		return s.pool
	}
	return sr.store.Service(s.cfg.name, s.pool)
}

// health is the shared registry the status and metrics report on; nil for the in-memory one.
func (sr *sharedRegistry) health() admin.SharedRegistry {
	if sr == nil {
		return nil
	}
	return sr.store
}
