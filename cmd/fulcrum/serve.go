package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fulcrumlb/fulcrum/admin"
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

func serveCommand() *cli.Command {
	flags := withConfigFile(serveFlags()) // config.go: every flag can also come from --config
	return &cli.Command{
		Name:   "serve",
		Usage:  "run the balancer",
		Flags:  flags,
		Before: loadConfigFile(flags),
		Action: serve,
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
}

func parseConfig(c *cli.Context) (*config, error) {
	cfg := &config{
		listen: c.String("listen"), admin: c.String("admin"),
		ttl: c.Duration("ttl"), sweep: c.Duration("sweep-interval"),
		connectTimeout: c.Duration("connect-timeout"), drainTimeout: c.Duration("drain-timeout"),
		retries: c.Int("retries"), metrics: c.Bool("metrics"),
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

func serve(c *cli.Context) error {
	cfg, err := parseConfig(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return run(ctx, cfg)
}

// run serves until ctx ends, then drains for up to cfg.drainTimeout.
func run(ctx context.Context, cfg *config) error {
	p := &pool.Pool{TTL: cfg.ttl, Policy: cfg.policy, Logger: cfg.log}
	for _, a := range cfg.backends {
		if err := p.RegisterStatic(a, 1); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.listen, err)
	}
	adminLn, err := net.Listen("tcp", cfg.admin)
	if err != nil {
		ln.Close()
		return fmt.Errorf("admin listen %s: %w", cfg.admin, err)
	}
	srv := &listener.Server{Picker: p, ConnectTimeout: cfg.connectTimeout, Retries: cfg.retries, Logger: cfg.log}
	closeOperating, err := cfg.operating.apply(srv, cfg.log) // flags_operating.go: PROXY protocol, access log
	if err != nil {
		ln.Close()
		adminLn.Close()
		return err
	}
	defer closeOperating()
	api := &admin.API{Registry: p, TrustedProxies: cfg.trusted, Logger: cfg.log}
	cfg.sec.apply(cfg.log, p, api, ln.Addr(), adminLn.Addr())
	cfg.resilience.apply(p, srv, api)
	if err := wireOperating(cfg, p, srv, api, ln, adminLn); err != nil {
		ln.Close()
		adminLn.Close()
		return err
	}
	adminSrv := admin.NewServer(cfg.admin, api.Handler())

	bg, cancelBg := context.WithCancel(context.Background())
	defer cancelBg()
	go p.RunSweeper(bg, cfg.sweep)
	go cfg.resilience.runChecks(bg, p, cfg.connectTimeout)
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	go func() { errc <- adminSrv.Serve(adminLn) }()
	cfg.log.Info("fulcrum serving", "listen", ln.Addr().String(), "admin", adminLn.Addr().String(),
		"balance", cfg.policy.Name(), "static_backends", len(cfg.backends))

	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("server stopped: %w", err)
	}
	return drain(srv, adminSrv, cfg)
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
