package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fulcrumlb/fulcrum/pool"
)

// The heartbeat agent: `fulcrum heartbeat` keeps one backend registered with a balancer, for
// backends that cannot run curl in a loop. It registers at once, heartbeats every --interval
// (minus up to a fifth, at random, so a fleet started together does not beat in step), retries
// with a growing backoff while the balancer cannot be reached, and deregisters on SIGINT or
// SIGTERM before exiting 0.

func heartbeatCommand() *cli.Command {
	return &cli.Command{
		Name:  "heartbeat",
		Usage: "keep a backend registered with a balancer until SIGINT/SIGTERM, then deregister it",
		Flags: append(clientFlags(),
			&cli.StringFlag{Name: "host", Usage: "the backend's `HOST`; empty means the address the balancer sees this agent call from", EnvVars: env("HEARTBEAT_HOST")},
			&cli.IntFlag{Name: "port", Required: true, Usage: "the backend's `PORT`", EnvVars: env("HEARTBEAT_PORT")},
			&cli.IntFlag{Name: "weight", Usage: "`WEIGHT` 1..256", DefaultText: "the balancer's: 1 for a new backend", EnvVars: env("HEARTBEAT_WEIGHT")},
			&cli.DurationFlag{Name: "interval", Value: 10 * time.Second, Usage: "time between heartbeats; keep it well under the balancer's --ttl", EnvVars: env("HEARTBEAT_INTERVAL")},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug (every heartbeat), info, warn or error", EnvVars: env("LOG_LEVEL")},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json", EnvVars: env("LOG_FORMAT")},
		),
		Action: heartbeat,
	}
}

func heartbeat(c *cli.Context) error {
	a, err := newAgent(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = a.run(ctx)
	stop() // a second signal during deregistration kills the agent at once
	if err != nil {
		return err
	}
	a.deregister()
	return nil
}

// agent heartbeats one backend.
type agent struct {
	client   *adminClient
	params   url.Values // service (when given), host, port and weight of /upstream/add
	interval time.Duration
	log      *slog.Logger
	server   string // "host:port" the balancer answered the last add with
}

func newAgent(c *cli.Context) (*agent, error) {
	ac, err := newAdminClient(c)
	if err != nil {
		return nil, err
	}
	log, err := newLogger(os.Stderr, c.String("log-level"), c.String("log-format"))
	if err != nil {
		return nil, err
	}
	if c.Duration("interval") <= 0 {
		return nil, errors.New("--interval must be positive")
	}
	params, err := serviceParams(c)
	if err != nil {
		return nil, err
	}
	// Checked here, before the first request: the balancer would refuse them anyway, but an
	// agent that cannot reach it yet would retry them for ever.
	if p := c.Int("port"); p < 1 || p > 65535 {
		return nil, fmt.Errorf("--port %d: want a port from 1 to 65535", p)
	}
	if w := c.Int("weight"); c.IsSet("weight") && (w < 1 || w > pool.MaxWeight) {
		return nil, fmt.Errorf("--weight %d: want a weight from 1 to %d", w, pool.MaxWeight)
	}
	params.Set("host", c.String("host"))
	params.Set("port", strconv.Itoa(c.Int("port")))
	if c.IsSet("weight") {
		params.Set("weight", strconv.Itoa(c.Int("weight")))
	}
	return &agent{client: ac, params: params, interval: c.Duration("interval"), log: log}, nil
}

// run heartbeats until ctx ends (nil) or the balancer refuses the backend for good (an error:
// bad input or credentials will not fix themselves by retrying).
func (a *agent) run(ctx context.Context) error {
	var backoff time.Duration
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := a.beat(ctx)
		switch {
		case err == nil:
			if backoff > 0 {
				a.log.Info("heartbeat restored", "server", a.server)
			}
			backoff = 0
			t.Reset(jitter(a.interval))
		case ctx.Err() != nil:
			return nil
		case permanent(err):
			return fmt.Errorf("heartbeat: %w", err)
		default:
			backoff = nextBackoff(backoff, a.interval)
			wait := backoff/2 + rand.N(backoff/2+1)
			a.log.Warn("heartbeat failed; retrying", "err", err, "retry_in", wait)
			t.Reset(wait)
		}
	}
}

func (a *agent) beat(ctx context.Context) error {
	reply, err := a.client.change(ctx, "/upstream/add", a.params)
	if err != nil {
		return err
	}
	server := replyServer(reply, a.params)
	if server != a.server {
		a.log.Info("registered", "server", server, "service", a.service(), "admin", a.client.base.Redacted(), "interval", a.interval)
		a.server = server
		return nil
	}
	a.log.Debug("heartbeat", "server", server)
	return nil
}

// service is the service the agent's backend is in, for its logs.
func (a *agent) service() string {
	if name := a.params.Get("service"); name != "" {
		return name
	}
	return pool.DefaultService
}

// deregister removes the backend from its service, named as the balancer named it (so an empty
// --host removes the same address it registered). A failure is logged, not fatal: the
// balancer's TTL will retire the backend anyway.
func (a *agent) deregister() {
	host, port := a.params.Get("host"), a.params.Get("port")
	if h, p, err := net.SplitHostPort(a.server); err == nil {
		host, port = h, p
	}
	params := url.Values{"host": {host}, "port": {port}}
	if name := a.params.Get("service"); name != "" {
		params.Set("service", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := a.client.change(ctx, "/upstream/remove", params)
	var ae *apiError
	switch {
	case err == nil:
		a.log.Info("deregistered", "server", net.JoinHostPort(host, port), "service", a.service())
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		a.log.Info("not registered; nothing to deregister", "err", err)
	default:
		a.log.Warn("deregistration failed; the balancer's TTL will retire the backend", "err", err)
	}
}

// permanent reports whether retrying cannot help: the balancer understood the request and
// refused it (4xx), other than a timeout or rate limit.
func permanent(err error) bool {
	var ae *apiError
	if !errors.As(err, &ae) {
		return false
	}
	return ae.Status/100 == 4 && ae.Status != http.StatusRequestTimeout && ae.Status != http.StatusTooManyRequests
}

// jitter is a heartbeat wait: interval minus up to a fifth, so it never comes later than asked.
func jitter(interval time.Duration) time.Duration {
	return interval - rand.N(interval/5+1)
}

// nextBackoff doubles from 500ms, up to the heartbeat interval (and at most 30s).
func nextBackoff(prev, interval time.Duration) time.Duration {
	limit := min(interval, 30*time.Second)
	return min(max(2*prev, 500*time.Millisecond), max(limit, 500*time.Millisecond))
}
