package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

func env(name string) []string { return []string{"FULCRUM_" + name} }

// serveFlags are every flag of serve; each concern adds its own list here.
func serveFlags() []cli.Flag {
	return slices.Concat(
		coreFlags(),
		securityFlags(),
		resilienceFlags(),
		operatingFlags(), // flags_operating.go: config file, PROXY protocol, access log
		metricsFlags(),   // flags_operating_metrics.go: --metrics
		persistFlags(),   // state.go, upgrade.go: --state-file, --pid-file
	)
}

func coreFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "listen", Value: ":8000", Usage: "balanced TCP `ADDR`", EnvVars: env("LISTEN")},
		&cli.StringFlag{Name: "admin", Value: "127.0.0.1:9090", Usage: "admin HTTP `ADDR` (a separate socket)", EnvVars: env("ADMIN")},
		&cli.DurationFlag{Name: "ttl", Value: 60 * time.Second, Usage: "a backend whose last heartbeat is older gets no new connections", EnvVars: env("TTL")},
		&cli.DurationFlag{Name: "sweep-interval", Value: 10 * time.Second, Usage: "how often expired backends are removed", EnvVars: env("SWEEP_INTERVAL")},
		&cli.StringSliceFlag{Name: "backend", Usage: "static backend `HOST:PORT`, never expires (repeatable)", EnvVars: env("BACKEND")},
		&cli.DurationFlag{Name: "connect-timeout", Value: 5 * time.Second, Usage: "timeout of one dial to a backend", EnvVars: env("CONNECT_TIMEOUT")},
		&cli.IntFlag{Name: "retries", Value: 2, Usage: "other backends to try after a failed dial", EnvVars: env("RETRIES")},
		&cli.DurationFlag{Name: "drain-timeout", Value: 30 * time.Second, Usage: "on SIGINT/SIGTERM, how long established connections may run on", EnvVars: env("DRAIN_TIMEOUT")},
		&cli.StringFlag{Name: "balance", Value: "leastconn", Usage: "policy: leastconn, p2c or hash", EnvVars: env("BALANCE")},
		&cli.StringSliceFlag{Name: "trusted-proxy", Usage: "`CIDR` whose X-Forwarded-For/X-Real-IP the admin API believes (repeatable)", EnvVars: env("TRUSTED_PROXY")},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: env("LOG_LEVEL")},
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json", EnvVars: env("LOG_FORMAT")},
	}
}

func serveCommand(u *upgrades) *cli.Command {
	flags := withConfigFile(serveFlags()) // config.go: every flag can also come from --config
	return &cli.Command{
		Name:   "serve",
		Usage:  "run the balancer",
		Flags:  flags,
		Before: loadConfigFile(flags),
		Action: func(c *cli.Context) error { return serve(c, u) },
	}
}

// config is the validated form of serve's flags.
type config struct {
	listen, admin  string
	ttl, sweep     time.Duration
	connectTimeout time.Duration
	drainTimeout   time.Duration
	retries        int
	backends       []pool.Address
	policy         pool.Policy
	trusted        []netip.Prefix
	log            *slog.Logger
	sec            *securityConfig
	resilience     resilienceConfig
	operating      operatingConfig // flags_operating.go
	metrics        bool            // --metrics
	// Persistence and upgrades (state.go, upgrade.go).
	stateFile, pidFile string
	handover           *handover // nil: plain listeners, no SIGHUP upgrades
}

func parseConfig(c *cli.Context) (*config, error) {
	cfg := &config{
		listen: c.String("listen"), admin: c.String("admin"),
		ttl: c.Duration("ttl"), sweep: c.Duration("sweep-interval"),
		connectTimeout: c.Duration("connect-timeout"), drainTimeout: c.Duration("drain-timeout"),
		retries: c.Int("retries"), metrics: c.Bool("metrics"),
		stateFile: c.String("state-file"), pidFile: c.String("pid-file"),
	}
	var err error
	if cfg.log, err = newLogger(os.Stderr, c.String("log-level"), c.String("log-format")); err != nil {
		return nil, err
	}
	if cfg.resilience, err = parseResilience(c); err != nil {
		return nil, err
	}
	if cfg.policy, err = pool.ParsePolicy(c.String("balance")); err != nil {
		return nil, fmt.Errorf("--balance: %w", err)
	}
	for _, b := range c.StringSlice("backend") {
		a, err := pool.ParseAddress(b)
		if err != nil {
			return nil, fmt.Errorf("--backend: %w", err)
		}
		cfg.backends = append(cfg.backends, a)
	}
	if cfg.sec, err = parseSecurity(c); err != nil {
		return nil, err
	}
	for _, s := range c.StringSlice("trusted-proxy") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxy %q: %w", s, err)
		}
		cfg.trusted = append(cfg.trusted, p.Masked())
	}
	if cfg.operating, err = parseOperating(c); err != nil {
		return nil, err
	}
	return cfg, cfg.check()
}

func (cfg *config) check() error {
	switch {
	case cfg.ttl < 0:
		return errors.New("--ttl must not be negative")
	case cfg.sweep <= 0:
		return errors.New("--sweep-interval must be positive")
	case cfg.connectTimeout <= 0:
		return errors.New("--connect-timeout must be positive")
	case cfg.drainTimeout < 0:
		return errors.New("--drain-timeout must not be negative")
	case cfg.retries < 0:
		return errors.New("--retries must not be negative")
	}
	return nil
}

func serve(c *cli.Context, u *upgrades) error {
	cfg, err := parseConfig(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Take over the parent's sockets after an upgrade; upgrade on SIGHUP.
	if cfg.handover, err = newHandover(cfg, u); err != nil {
		return err
	}
	defer cfg.handover.stop()
	return run(ctx, cfg)
}

// run serves until ctx ends, then drains for up to cfg.drainTimeout. It builds every part
// from cfg, then starts them.
func run(ctx context.Context, cfg *config) error {
	p, err := newPool(cfg)
	if err != nil {
		return err
	}
	store := restoreRegistry(cfg, p) // registry from the parent or --state-file
	ln, adminLn, err := cfg.handover.listenBoth(cfg.listen, cfg.admin)
	if err != nil {
		return err
	}
	obs, err := newObservers(cfg, p)
	if err != nil {
		ln.Close()
		adminLn.Close()
		return err
	}
	defer obs.closeLog()
	srv := newServer(cfg, p, obs.list)
	api := newAPI(cfg, p, srv, obs.metrics, ln.Addr(), adminLn.Addr())
	cfg.sec.warnOpenAdmin(cfg.log, adminLn.Addr())

	bg, cancelBg := context.WithCancel(context.Background())
	defer cancelBg()
	go p.Maintain(bg, maintenance(cfg))
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	adminSrv := &adminServer{addr: cfg.admin, handler: api.Handler(), errc: errc} // pausable for upgrades
	adminSrv.serve(adminLn)
	cfg.log.Info("fulcrum serving", "listen", ln.Addr().String(), "admin", adminLn.Addr().String(),
		"balance", cfg.policy.Name(), "static_backends", len(cfg.backends))
	if store != nil {
		go store.run(bg)
		defer store.flush()
	}
	if err := cfg.handover.ready(); err != nil {
		cfg.log.Error("cannot signal readiness; upgrades disabled", "err", err)
	}
	go cfg.handover.watch(bg, p, adminSrv, store)

	select {
	case <-ctx.Done():
	case <-cfg.handover.exit(): // a successor took over
	case err := <-errc:
		return fmt.Errorf("server stopped: %w", err)
	}
	return drain(srv, adminSrv.server(), cfg)
}

func drain(srv *listener.Server, adminSrv *http.Server, cfg *config) error {
	cfg.log.Info("shutting down: draining connections", "active", srv.ActiveConns(), "timeout", cfg.drainTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.drainTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		cfg.log.Warn("drain timeout: closed remaining connections", "err", err)
	}
	actx, acancel := context.WithTimeout(context.Background(), time.Second)
	defer acancel()
	if err := adminSrv.Shutdown(actx); err != nil {
		adminSrv.Close()
	}
	cfg.log.Info("stopped")
	return nil
}
