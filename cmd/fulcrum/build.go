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

// newPool builds the registry with its static backends.
func newPool(cfg *config) (*pool.Pool, error) {
	p := &pool.Pool{
		TTL:                cfg.ttl,
		Policy:             cfg.policy,
		Logger:             cfg.log,
		MaxBackends:        cfg.sec.maxBackends,
		SlowStart:          cfg.resilience.slowStart,
		MaxConnsPerBackend: cfg.resilience.maxPerConn,
		HealthFall:         cfg.resilience.healthFall,
		HealthRise:         cfg.resilience.healthRise,
	}
	for _, a := range cfg.backends {
		if err := p.RegisterStatic(a, 1); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// maintenance is the pool's background work: sweeps and, unless off, active health checks
// (each bounded by the connect timeout).
func maintenance(cfg *config) pool.Maintenance {
	return pool.Maintenance{
		SweepInterval: cfg.sweep,
		Checks:        pool.HealthCheck{Interval: cfg.resilience.healthInterval, Timeout: cfg.connectTimeout},
	}
}

// observers is everything that hears the data plane's connections: backends' byte totals
// (always: two atomic adds per chunk), metrics (unless --metrics=false) and the access log.
type observers struct {
	list     listener.Observers
	metrics  *admin.Metrics // nil with --metrics=false
	closeLog func()         // closes the access log; call it once the server has shut down
}

func newObservers(cfg *config, p *pool.Pool) (*observers, error) {
	o := &observers{list: listener.Observers{listener.BackendBytes{}}, closeLog: func() {}}
	if cfg.metrics {
		m, err := admin.NewMetrics(p)
		if err != nil {
			return nil, fmt.Errorf("--metrics: %w", err)
		}
		o.metrics = m
		o.list = append(o.list, m)
	}
	if path := cfg.operating.accessLog; path != "" {
		w, closeLog, err := openAccessLog(path, cfg.log)
		if err != nil {
			return nil, err
		}
		o.list = append(o.list, listener.NewAccessLog(w))
		o.closeLog = closeLog
	}
	return o, nil
}

func openAccessLog(path string, log *slog.Logger) (io.Writer, func(), error) {
	if path == "-" {
		return os.Stderr, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("--access-log: %w", err)
	}
	return f, func() {
		if err := f.Close(); err != nil {
			log.Warn("closing the access log", "path", path, "err", err)
		}
	}, nil
}

// newServer builds the data plane over the pool.
func newServer(cfg *config, p *pool.Pool, obs listener.Observer) *listener.Server {
	return &listener.Server{
		Picker:         p,
		ConnectTimeout: cfg.connectTimeout,
		Retries:        cfg.retries,
		Logger:         cfg.log,
		Observer:       obs,
		MaxConns:       cfg.resilience.maxConns,
		QueueTimeout:   cfg.resilience.queueTimeout,
		DataPath:       listener.Splice{IdleTimeout: cfg.resilience.idleTimeout},
		ProxyProtocol:  cfg.operating.proxy,
	}
}

// newAPI builds the admin API. listen and adminAddr are the bound listeners' addresses: the
// loop check needs them and the status page shows them.
func newAPI(cfg *config, p *pool.Pool, srv *listener.Server, m *admin.Metrics, listen, adminAddr net.Addr) *admin.API {
	return &admin.API{
		Registry:       p,
		TrustedProxies: cfg.trusted,
		Logger:         cfg.log,
		Security: admin.Security{
			Token:         cfg.sec.token,
			TokenRead:     cfg.sec.tokenRead,
			AllowBackends: cfg.sec.allow,
			Rate:          cfg.sec.rate,
			Burst:         cfg.sec.burst,
			Self:          addrPorts(listen, adminAddr), // for the loop check
		},
		CloseBackend: srv.CloseBackend,
		Metrics:      m,
		Overview: &admin.Overview{
			Listen:  []string{listen.String()},
			Admin:   adminAddr.String(),
			Version: appVersion(),
			Started: time.Now(),
			Stats:   srv.Stats(),
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
