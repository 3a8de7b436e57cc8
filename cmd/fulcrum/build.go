package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// The constructors below turn the parsed configuration into complete values; run calls them
// in order and nothing is set on a value after it is built.

// servicePool is one service's configuration and pool: all that restoring the registry, the
// etcd mirror, the state file and the metrics need, built before anything listens.
type servicePool struct {
	cfg  serviceConfig
	pool *pool.Pool
}

// service is one running service, built complete by newService once its listeners are open:
// its configuration and pool, its listeners and its server.
type service struct {
	*servicePool
	lns []net.Listener
	srv *listener.Server
}

// newPools builds every service's registry with its static backends; log is the pools'
// logger.
func newPools(cfg *config, log *slog.Logger) ([]*servicePool, error) {
	out := make([]*servicePool, 0, len(cfg.services))
	for _, sc := range cfg.services {
		p, err := newPool(cfg, sc, log)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", sc.name, err)
		}
		out = append(out, &servicePool{cfg: sc, pool: p})
	}
	return out, nil
}

// newServices builds every running service from its pool, its listeners (lns[i] are
// pools[i]'s) and its server over the shared parts.
func newServices(cfg *config, pools []*servicePool, lns [][]net.Listener, obs *observers, sh shared) []*service {
	out := make([]*service, len(pools))
	for i, sp := range pools {
		out[i] = &service{servicePool: sp, lns: lns[i], srv: newServer(cfg, sp.cfg, sp.pool, obs.forService(sp.cfg.name), sh)}
		if obs.metrics != nil && out[i].srv.Clients != nil {
			obs.metrics.DeclareClientBounds(sp.cfg.name) // fulcrum_client_refused_total at 0
		}
	}
	return out
}

// newPool builds one service's registry with its static backends.
func newPool(cfg *config, sc serviceConfig, log *slog.Logger) (*pool.Pool, error) {
	tc := sc.traffic
	p := &pool.Pool{
		TTL:                cfg.localTTL(), // registry.go: 0 when etcd expires backends
		Policy:             sc.policy,
		Logger:             log.With("service", sc.name),
		MaxBackends:        cfg.sec.maxBackends,
		SlowStart:          tc.slowStart,
		MaxConnsPerBackend: tc.maxPerConn,
		HealthFall:         tc.healthFall,
		HealthRise:         tc.healthRise,
	}
	for _, a := range sc.backends {
		if err := p.RegisterStatic(a, 1); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// maintenance is a service's background work: sweeps and, unless off, active health checks
// (each bounded by the connect timeout).
func maintenance(cfg *config, sc serviceConfig) pool.Maintenance {
	return pool.Maintenance{
		SweepInterval: cfg.sweep,
		Checks:        pool.HealthCheck{Interval: sc.traffic.healthInterval, Timeout: sc.traffic.connectTimeout},
	}
}

// observers is everything that hears the data plane's connections: backends' byte totals for
// status (always: an atomic add per chunk), metrics (unless --metrics=false: another, kept
// apart because a Prometheus counter must not start again when a backend is forgotten and
// registered anew) and the access log.
type observers struct {
	metrics   *admin.Metrics      // nil with --metrics=false
	accessLog *listener.AccessLog // nil without --access-log
	logFile   *reopenFile         // the access log's file, reopened on SIGUSR1; nil without one or with -
	closeLog  func()              // closes the access log; call it once the servers have shut down
}

func newObservers(cfg *config, pools []*servicePool) (*observers, error) {
	o := &observers{closeLog: func() {}}
	if cfg.metrics {
		m, err := admin.NewServiceMetrics(metricsServices(pools))
		if err != nil {
			return nil, fmt.Errorf("--metrics: %w", err)
		}
		o.metrics = m
	}
	if path := cfg.operating.accessLog; path != "" {
		w, file, closeLog, err := openAccessLog(path, cfg.log)
		if err != nil {
			return nil, err
		}
		o.accessLog = listener.NewAccessLog(w)
		o.logFile, o.closeLog = file, closeLog
	}
	return o, nil
}

// forService is the observer list of one service's server: metrics need to know the service
// of a rejection or a failed dial, which carry no ConnInfo.
func (o *observers) forService(name string) listener.Observers {
	list := listener.Observers{listener.BackendBytes{}}
	if o.metrics != nil {
		list = append(list, o.metrics.ForService(name))
	}
	if o.accessLog != nil {
		list = append(list, o.accessLog.ForService(name))
	}
	return list
}

// sniObserver hears the SNI routers' decisions: the metrics, if on; nil otherwise.
func (o *observers) sniObserver() listener.SNIObserver {
	if o.metrics == nil {
		return nil // not a nil *admin.Metrics in the interface
	}
	return o.metrics
}

// clientObserver counts per-client refusals: the metrics, if on; nil otherwise.
func (o *observers) clientObserver() listener.ClientObserver {
	if o.metrics == nil {
		return nil
	}
	return o.metrics
}

// adminServices is how the admin API sees the services, each over its registry: its pool, or
// with reg (the etcd registry) its pool shared through etcd.
func adminServices(services []*service, reg *sharedRegistry) []admin.Service {
	out := make([]admin.Service, 0, len(services))
	for _, s := range services {
		out = append(out, admin.Service{
			Name: s.cfg.name, Listen: s.listenAddrs(), Balance: s.cfg.policy.Name(), SNI: s.cfg.sniText(),
			TopClients: topClients(s.srv.Clients),
			Registry:   reg.registry(s.servicePool), CloseBackend: s.closeBackend,
		})
	}
	return out
}

// metricsServices is how the metrics see the services: they read only the name and the
// registry, and only read, so the pools serve them.
func metricsServices(pools []*servicePool) []admin.Service {
	out := make([]admin.Service, 0, len(pools))
	for _, sp := range pools {
		out = append(out, admin.Service{Name: sp.cfg.name, Registry: sp.pool})
	}
	return out
}

// listenAddrs are the service's bound listen addresses.
func (s *service) listenAddrs() []string {
	out := make([]string, 0, len(s.lns))
	for _, ln := range s.lns {
		out = append(out, ln.Addr().String())
	}
	return out
}

// closeBackend resets the connections to one backend of the service (remove?force=1).
func (s *service) closeBackend(key string) int { return s.srv.CloseBackend(key) }

// openAccessLog opens --access-log: stderr for "-", else a file that SIGUSR1 reopens
// (reopen.go), which it returns too.
func openAccessLog(path string, log *slog.Logger) (io.Writer, *reopenFile, func(), error) {
	if path == "-" {
		return os.Stderr, nil, func() {}, nil
	}
	f, err := openReopenFile(path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--access-log: %w", err)
	}
	return f, f, func() {
		if err := f.Close(); err != nil {
			log.Warn("closing the access log", "path", path, "err", err)
		}
	}, nil
}

// shared is what every service's server shares: the --max-conns cap and the running totals.
type shared struct {
	limit  *listener.ConnLimit
	totals *listener.Stats
	loops  *listener.EventLoops // the event loops of the epoll and sockmap planes; nil on the goroutine plane
	// clientObs counts the connections per-client bounds refuse (the metrics); nil: none.
	clientObs listener.ClientObserver
}

func newShared(cfg *config) shared {
	sh := shared{limit: listener.NewConnLimit(cfg.resilience.maxConns), totals: new(listener.Stats)}
	sh.loops = cfg.dataPlane.newLoops(cfg.resilience.maxConns) // flags_dataplane.go
	return sh
}

// stop ends the event loops; every server on them must have shut down.
func (sh shared) stop() {
	if sh.loops != nil {
		sh.loops.Stop()
	}
}

// sockmapStats reads where the sockmap plane's connections are, for the status and the
// metrics; nil on the other planes, which have none to show.
func (sh shared) sockmapStats(plane listener.DataPlane) func() listener.SockmapStats {
	if plane != listener.PlaneSockmap || sh.loops == nil {
		return nil
	}
	return sh.loops.SockmapStats
}

// newServer builds one service's data plane over its pool.
func newServer(cfg *config, sc serviceConfig, p *pool.Pool, obs listener.Observer, sh shared) *listener.Server {
	tc := sc.traffic
	return &listener.Server{
		Picker:         p,
		Service:        sc.name,
		ConnectTimeout: tc.connectTimeout,
		Retries:        tc.retries,
		Logger:         cfg.log.With("service", sc.name),
		Observer:       obs,
		Limit:          sh.limit,
		Totals:         sh.totals,
		QueueTimeout:   tc.queueTimeout,
		IdleTimeout:    tc.idleTimeout,
		DataPlane:      cfg.dataPlane.plane,
		Loops:          sh.loops,
		ProxyProtocol:  tc.proxy,
		Clients:        newClientTable(tc.clients), // clients.go; nil without bounds
		ClientObserver: sh.clientObs,
	}
}

// newAPI builds the admin API over every service. adminAddr is the admin listener's bound
// address: the loop check needs it and every service's listen address, and the status page
// shows them. reg is the etcd registry, nil for the in-memory one.
func newAPI(cfg *config, services []*service, m *admin.Metrics, sh shared, adminAddr net.Addr, reg *sharedRegistry) *admin.API {
	var listen []string
	self := addrPorts(adminAddr)
	for _, s := range services {
		listen = append(listen, s.listenAddrs()...)
		for _, ln := range s.lns {
			self = append(self, addrPorts(ln.Addr())...)
		}
	}
	return &admin.API{ // Services, so no Registry or CloseBackend of its own
		Services:       adminServices(services, reg),
		Shared:         reg.health(),
		TrustedProxies: cfg.trusted,
		Logger:         cfg.log,
		Security: admin.Security{
			Token:         cfg.sec.token,
			TokenRead:     cfg.sec.tokenRead,
			AllowBackends: cfg.sec.allow,
			Rate:          cfg.sec.rate,
			Burst:         cfg.sec.burst,
			Self:          self, // for the loop check
		},
		Metrics: m,
		Overview: &admin.Overview{
			Listen:    listen,
			Admin:     adminAddr.String(),
			Version:   appVersion(),
			Started:   time.Now(),
			Stats:     sh.totals,
			DataPlane: string(cfg.dataPlane.plane),
			Sockmap:   sh.sockmapStats(cfg.dataPlane.plane),
		},
	}
}

func addrPorts(addrs ...net.Addr) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range addrs {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			out = append(out, ap)
		}
	}
	return out
}

// warnOpenAdmin warns when the admin API is reachable from other machines without a token,
// because then the address-only rule is all that protects the registry.
func (sc *securityConfig) warnOpenAdmin(log *slog.Logger, adminAddr net.Addr) {
	ap, err := netip.ParseAddrPort(adminAddr.String())
	if sc.token == "" && (err != nil || !ap.Addr().IsLoopback()) {
		log.Warn("admin API listens on a non-loopback address without --admin-token: "+
			"anyone who can reach it may register, heartbeat or remove their own address "+
			"(address-only rule); set --admin-token or bind --admin to 127.0.0.1",
			"admin", adminAddr.String())
	}
}
