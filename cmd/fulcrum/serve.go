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
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fulcrumlb/fulcrum/internal/asynclog"
	"github.com/fulcrumlb/fulcrum/listener/clientlimit"
	"github.com/fulcrumlb/fulcrum/pool"
	"github.com/fulcrumlb/fulcrum/pool/etcdreg"
)

func env(name string) []string { return []string{"FULCRUM_" + name} }

// serveFlags are every flag of serve; each concern adds its own list here.
func serveFlags() []cli.Flag {
	return slices.Concat(
		coreFlags(),
		securityFlags(),
		resilienceFlags(),
		dataPlaneFlags(),   // flags_dataplane.go: --data-plane, --loops
		operatingFlags(),   // flags_operating.go: config file, PROXY protocol, access log
		metricsFlags(),     // flags_operating_metrics.go: --metrics
		persistFlags(),     // state.go, upgrade.go: --state-file, --pid-file
		serviceFlags(),     // services.go: --service
		sniFlags(),         // sni.go: --sni, --client-hello-timeout
		clientBoundFlags(), // clients.go: per-client bounds
		registryFlags(),    // registry.go: --registry, --etcd-*
	)
}

func coreFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "listen", Value: ":8000", Usage: "balanced TCP `ADDR`", EnvVars: env("LISTEN")},
		&cli.StringFlag{Name: "admin", Value: "127.0.0.1:9090", Usage: "admin HTTP `ADDR` (a separate socket)", EnvVars: env("ADMIN")},
		&cli.DurationFlag{Name: "ttl", Value: 60 * time.Second, Usage: "a backend whose last heartbeat is older gets no new connections", EnvVars: env("TTL")},
		&cli.DurationFlag{Name: "sweep-interval", Value: 10 * time.Second, Usage: "how often expired backends are removed", EnvVars: env("SWEEP_INTERVAL")},
		&cli.StringSliceFlag{Name: "backend", Usage: "static backend `HOST:PORT` of the default service, or NAME=HOST:PORT of service NAME; never expires (repeatable)", EnvVars: env("BACKEND")},
		&cli.DurationFlag{Name: "connect-timeout", Value: 5 * time.Second, Usage: "timeout of one dial to a backend", EnvVars: env("CONNECT_TIMEOUT")},
		&cli.IntFlag{Name: "retries", Value: 2, Usage: "other backends to try after a failed dial", EnvVars: env("RETRIES")},
		&cli.DurationFlag{Name: "drain-timeout", Value: 30 * time.Second, Usage: "on SIGINT/SIGTERM, how long established connections may run on", EnvVars: env("DRAIN_TIMEOUT")},
		&cli.StringFlag{Name: "balance", Value: "leastconn", Usage: "policy: leastconn (fewest connections per weight), p2c, hash, maglev, or roundrobin (smooth weighted round robin: exact weight shares even for sequential connections)", EnvVars: env("BALANCE")},
		&cli.StringSliceFlag{Name: "trusted-proxy", Usage: "`CIDR` whose X-Forwarded-For/X-Real-IP the admin API believes (repeatable)", EnvVars: env("TRUSTED_PROXY")},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: env("LOG_LEVEL")},
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json", EnvVars: env("LOG_FORMAT")},
	}
}

func serveCommand(u *upgrades) *cli.Command {
	flags := withConfigFile(serveFlags()) // config.go: every flag can also come from --config
	return &cli.Command{
		Name:  "serve",
		Usage: "run the balancer",
		Flags: append(flags, checkFlagDef()), // check.go: --check, which the file cannot set
		Before: func(c *cli.Context) error {
			if err := noArguments(c); err != nil { // usage.go: before the config file is read
				return err
			}
			return loadConfigFile(flags)(c)
		},
		Action: func(c *cli.Context) error {
			if c.Bool(checkFlag) {
				return checkConfig(c)
			}
			return serve(c, u)
		},
	}
}

// config is the validated form of serve's flags.
type config struct {
	listen, admin  string
	ttl, sweep     time.Duration
	connectTimeout time.Duration
	drainTimeout   time.Duration
	retries        int
	// clientHelloTimeout bounds the TLS hello on addresses routed by server name (sni.go).
	clientHelloTimeout time.Duration
	clients            clientlimit.Config // per-client bounds of every service (clients.go)
	policy             pool.Policy
	services           []serviceConfig // services.go: [0] is the default service
	trusted            []netip.Prefix
	log                *slog.Logger
	sec                *securityConfig
	resilience         resilienceConfig
	dataPlane          dataPlaneConfig // flags_dataplane.go
	operating          operatingConfig // flags_operating.go
	metrics            bool            // --metrics
	registry           *etcdreg.Config // registry.go: --registry etcd://...; nil: in memory
	// Persistence and upgrades (state.go, upgrade.go).
	stateFile, pidFile string
	handover           *handover // nil: plain listeners, no SIGHUP upgrades
	// ownsSignals: this serve is the process's (not an in-process test's), so a second
	// SIGINT/SIGTERM ends the drain at once and SIGUSR1 reopens the access log (reopen.go).
	ownsSignals bool
	notify      notifier // notify.go: systemd's readiness protocol
}

func parseConfig(c *cli.Context) (*config, error) {
	cfg := &config{
		listen: c.String("listen"), admin: c.String("admin"),
		ttl: c.Duration("ttl"), sweep: c.Duration("sweep-interval"),
		connectTimeout: c.Duration("connect-timeout"), drainTimeout: c.Duration("drain-timeout"),
		retries: c.Int("retries"), metrics: c.Bool("metrics"),
		clientHelloTimeout: c.Duration("client-hello-timeout"),
		stateFile:          c.String("state-file"), pidFile: c.String("pid-file"),
	}
	var err error
	if cfg.log, err = newLogger(os.Stderr, c.String("log-level"), c.String("log-format")); err != nil {
		return nil, err
	}
	if cfg.resilience, err = parseResilience(c); err != nil {
		return nil, err
	}
	if cfg.dataPlane, err = parseDataPlane(c); err != nil {
		return nil, err
	}
	if cfg.policy, err = pool.ParsePolicy(c.String("balance")); err != nil {
		return nil, fmt.Errorf("--balance: %w", err)
	}
	if cfg.sec, err = parseSecurity(c); err != nil {
		return nil, err
	}
	for _, s := range c.StringSlice("trusted-proxy") {
		p, err := parsePrefix(s) // flags_security.go: a bare address is its /32 or /128
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxy: %w", err)
		}
		cfg.trusted = append(cfg.trusted, p)
	}
	if cfg.operating, err = parseOperating(c); err != nil {
		return nil, err
	}
	if cfg.clients, err = parseClientBounds(c); err != nil {
		return nil, err
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.registry, err = parseRegistry(c, cfg.ttl); err != nil {
		return nil, err
	}
	if cfg.services, err = parseServices(c, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
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
	case cfg.clientHelloTimeout <= 0:
		return errors.New("--client-hello-timeout must be positive")
	}
	return nil
}

func serve(c *cli.Context, u *upgrades) error {
	cfg, err := parseConfig(c)
	if err != nil {
		return err
	}
	if err := errors.Join(fileProblems(cfg)...); err != nil { // files.go
		return err
	}
	if err := errors.Join(checkSNI(cfg.services)...); err != nil { // sni.go
		return err
	}
	cfg.dataPlane.warnLoops(cfg.log)
	cfg.ownsSignals, cfg.notify = true, notifier{log: cfg.log}
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
	poolLog := asynclog.New(cfg.log.Handler(), asynclog.DefaultQueue) // pools log from event-loop threads too
	defer poolLog.Close()
	pools, err := newPools(cfg, poolLog.Logger())
	if err != nil {
		return err
	}
	store, restored, err := restoreRegistry(cfg, pools) // registry from the parent or --state-file
	if err != nil {
		return err
	}
	reg, err := startShared(cfg, pools, restored) // registry.go: nil unless --registry etcd://
	if err != nil {
		return err
	}
	defer reg.close()
	lns, adminLn, err := listenAll(cfg, pools)
	if err != nil {
		return err
	}
	obs, err := newObservers(cfg, pools)
	if err != nil {
		closeAll(lns, adminLn)
		return err
	}
	defer obs.closeLog()
	sh := newShared(cfg)
	sh.clientObs = obs.clientObserver() // before any server is built
	defer sh.stop()                     // after every server has shut down (drain)
	services := newServices(cfg, pools, lns, obs, sh)
	routers, err := newSNIRouters(cfg, services, obs, sh) // sni.go
	if err != nil {
		closeAll(lns, adminLn)
		return err
	}
	api := newAPI(cfg, services, obs.metrics, sh, adminLn.Addr(), reg)
	cfg.sec.warnOpenAdmin(cfg.log, adminLn.Addr())

	bg, cancelBg := context.WithCancel(context.Background())
	defer cancelBg()
	errc := make(chan error, 1+listenerCount(services))
	for _, s := range services {
		go s.pool.Maintain(bg, maintenance(cfg, s.cfg))
		for _, ln := range s.lns {
			if !routedListener(routers, ln) {
				go func() { errc <- s.srv.Serve(ln) }()
			}
		}
	}
	for _, r := range routers {
		go func() { errc <- r.router.Serve(r.ln) }()
	}
	adminSrv := &adminServer{addr: cfg.admin, handler: api.Handler(), errc: errc} // pausable for upgrades
	adminSrv.serve(adminLn)
	logServing(cfg, services, adminLn)
	if store != nil {
		go store.run(bg)
		defer store.flush()
	}
	if cfg.ownsSignals && obs.logFile != nil {
		go reopenOnSIGUSR1(bg, obs.logFile, cfg.log) // ends with bg
	}
	if err := cfg.handover.ready(); err != nil {
		cfg.log.Error("cannot signal readiness; upgrades disabled", "err", err)
	}
	cfg.notify.ready(cfg.handover.upgraded())
	go cfg.handover.watch(bg, pools, adminSrv, store)

	select {
	case <-ctx.Done():
		cfg.notify.stopping()
		return drain(services, routers, adminSrv.server(), cfg, true)
	case <-cfg.handover.exit(): // a successor took over, and is systemd's main process now
		// Signals now are meant for both processes (systemctl stop): this one drains on.
		return drain(services, routers, adminSrv.server(), cfg, false)
	case err := <-errc:
		// One listener failed: the others, and the admin API, still run. Stop them as on a
		// signal (their connections drain), so that the shared event loops stop only after
		// every server, then report the failure.
		cfg.notify.stopping()
		drain(services, routers, adminSrv.server(), cfg, true)
		return fmt.Errorf("server stopped: %w", err)
	}
}

// hardStop is a channel that receives a second SIGINT or SIGTERM, when this serve owns the
// process's signals and on is set; nil (never ready) otherwise. The first signal went to
// serve's context.
func hardStop(cfg *config, on bool) (<-chan os.Signal, func()) {
	if !cfg.ownsSignals || !on {
		return nil, func() {}
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	return ch, func() { signal.Stop(ch) }
}

// listenAll opens (or inherits after an upgrade) every service's listeners (lns[i] are
// pools[i]'s) and the admin listener. On failure it closes what it opened.
func listenAll(cfg *config, pools []*servicePool) (lns [][]net.Listener, adminLn net.Listener, err error) {
	lns = make([][]net.Listener, len(pools))
	opened := map[string]net.Listener{} // an address several services name is one listener (sni.go)
	for i, sp := range pools {
		for j, addr := range sp.cfg.listen {
			if ln, ok := opened[addr]; ok && !endsInPortZero(addr) {
				lns[i] = append(lns[i], ln)
				continue
			}
			ln, err := cfg.handover.listen(listenRole(sp.cfg.name, j), addr)
			if err != nil {
				closeAll(lns, nil)
				return nil, nil, fmt.Errorf("service %s: listen %s: %w", sp.cfg.name, addr, err)
			}
			lns[i] = append(lns[i], ln)
			opened[addr] = ln
		}
	}
	if adminLn, err = cfg.handover.listen("admin", cfg.admin); err != nil {
		closeAll(lns, nil)
		return nil, nil, fmt.Errorf("admin listen %s: %w", cfg.admin, err)
	}
	return lns, adminLn, nil
}

// listenRole names a listener for the upgrade hand-over; the default service's first keeps
// the name it had before there were services, so an upgrade from such a process finds it.
func listenRole(service string, i int) string {
	if service == pool.DefaultService && i == 0 {
		return "listen"
	}
	return fmt.Sprintf("service-%s-%d", service, i)
}

// closeAll closes the services' listeners and the admin listener (nil: none).
func closeAll(lns [][]net.Listener, adminLn net.Listener) {
	for _, l := range lns {
		for _, ln := range l {
			ln.Close()
		}
	}
	if adminLn != nil {
		adminLn.Close()
	}
}

func listenerCount(services []*service) int {
	n := 0
	for _, s := range services {
		n += len(s.lns)
	}
	return n
}

func logServing(cfg *config, services []*service, adminLn net.Listener) {
	def := services[0]
	static := 0
	for _, s := range services {
		static += len(s.cfg.backends)
	}
	cfg.log.Info("fulcrum serving", "listen", def.lns[0].Addr().String(), "admin", adminLn.Addr().String(),
		"balance", def.cfg.policy.Name(), "static_backends", static, "services", len(services),
		"data_plane", string(cfg.dataPlane.plane), "loops", cfg.dataPlane.loopCount())
	for _, s := range services[1:] {
		cfg.log.Info("service serving", "service", s.cfg.name, "listen", strings.Join(s.listenAddrs(), ","),
			"balance", s.cfg.policy.Name(), "static_backends", len(s.cfg.backends))
	}
}

// errHardStop ends a drain cut short by a second signal: the exit status is 1.
var errHardStop = errors.New("second signal during the drain: stopped at once, open connections were reset")

// drain stops every service's server at once, letting established connections run on for up
// to cfg.drainTimeout, then stops the admin API. With hardStopOK a SIGINT/SIGTERM (the
// second: the first started the drain) resets the connections and ends it at once.
func drain(services []*service, routers []sniRouter, adminSrv *http.Server, cfg *config, hardStopOK bool) error {
	active := 0
	for _, s := range services {
		active += s.srv.ActiveConns()
	}
	hard, stopHard := hardStop(cfg, hardStopOK)
	defer stopHard()
	msg := "shutting down: draining connections"
	if hard != nil {
		msg += " (a second SIGINT/SIGTERM stops at once)"
	}
	cfg.log.Info(msg, "active", active, "timeout", cfg.drainTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.drainTimeout)
	defer cancel()
	var forced atomic.Bool
	go func() { // ends with ctx: the drain's end or the second signal
		select {
		case <-hard:
			forced.Store(true)
			cfg.log.Warn("second signal: resetting every open connection and stopping")
			cancel()
		case <-ctx.Done():
		}
	}()
	shutdownRouters(ctx, routers, cfg) // sni.go: before the services they hand connections to
	var wg sync.WaitGroup
	for _, s := range services {
		wg.Go(func() {
			if err := s.srv.Shutdown(ctx); err != nil && !forced.Load() {
				cfg.log.Warn("drain timeout: closed remaining connections", "service", s.cfg.name, "err", err)
			}
		})
	}
	wg.Wait()
	if forced.Load() {
		adminSrv.Close()
		return errHardStop
	}
	actx, acancel := context.WithTimeout(context.Background(), time.Second)
	defer acancel()
	if err := adminSrv.Shutdown(actx); err != nil {
		adminSrv.Close()
	}
	cfg.log.Info("stopped")
	return nil
}
