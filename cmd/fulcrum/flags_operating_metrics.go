package main

import (
	"fmt"
	"net"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// metricsFlags are the flags of the metrics and status page concern.
func metricsFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "metrics", Value: true, EnvVars: env("METRICS"),
			Usage: "count connections, bytes and heartbeats with go-metrics and serve them at GET /metrics on the admin listener (--metrics=false: no instrumentation)"},
	}
}

// wireOperating gives the admin API what the status page shows and, unless --metrics=false,
// instruments the data path and the admin API. Backends' byte totals (status bytes_in,
// bytes_out) are counted either way: two atomic adds per chunk.
func wireOperating(cfg *config, p *pool.Pool, srv *listener.Server, api *admin.API, ln, adminLn net.Listener) error {
	api.Overview = &admin.Overview{
		Listen:  []string{ln.Addr().String()},
		Admin:   adminLn.Addr().String(),
		Version: appVersion(),
		Started: time.Now(),
		Stats:   srv.Stats(),
	}
	obs := listener.Observer(listener.BackendBytes{})
	if cfg.metrics {
		m, err := admin.NewMetrics(p)
		if err != nil {
			return fmt.Errorf("--metrics: %w", err)
		}
		api.Metrics = m
		obs = listener.Observers{obs, m}
	}
	srv.Observer = addObserver(srv.Observer, obs)
	return nil
}

// addObserver puts o beside any observer another concern (the access log) has already set.
func addObserver(have, o listener.Observer) listener.Observer {
	if have == nil {
		return o
	}
	return listener.Observers{have, o}
}
