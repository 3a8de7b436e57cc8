package main

import (
	"errors"
	"time"

	"github.com/urfave/cli/v2"
)

// resilienceFlags are the flags of health checking, slow start, limits and timeouts.
func resilienceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: "health-interval", Value: 5 * time.Second, Usage: "active TCP health check of every backend this often (timeout --connect-timeout); 0 turns checks off", EnvVars: env("HEALTH_INTERVAL")},
		&cli.IntFlag{Name: "health-fall", Value: 3, Usage: "failed checks in a row that mark a backend down", EnvVars: env("HEALTH_FALL")},
		&cli.IntFlag{Name: "health-rise", Value: 2, Usage: "passed checks in a row that bring a backend back up", EnvVars: env("HEALTH_RISE")},
		&cli.DurationFlag{Name: "slow-start", Value: 0, Usage: "ramp a backend that joins or comes back up from 10% to 100% of its weight over this window; 0 is off", EnvVars: env("SLOW_START")},
		&cli.IntFlag{Name: "max-conns", Value: 0, Usage: "connections served at once; at the limit new ones wait in the kernel backlog; 0 is no limit", EnvVars: env("MAX_CONNS")},
		&cli.IntFlag{Name: "max-conns-per-backend", Value: 0, Usage: "connections per backend; a full backend is skipped; 0 is no limit", EnvVars: env("MAX_CONNS_PER_BACKEND")},
		&cli.DurationFlag{Name: "queue-timeout", Value: 5 * time.Second, Usage: "when every backend is full, how long a client waits for a slot before it is closed", EnvVars: env("QUEUE_TIMEOUT")},
		&cli.DurationFlag{Name: "idle-timeout", Value: time.Hour, Usage: "close a connection with no bytes either way for this long (half-closed ones too); 0 is never", EnvVars: env("IDLE_TIMEOUT")},
	}
}

// resilienceConfig is the validated form of resilienceFlags.
type resilienceConfig struct {
	healthInterval         time.Duration
	healthFall, healthRise int
	slowStart              time.Duration
	maxConns, maxPerConn   int
	queueTimeout           time.Duration
	idleTimeout            time.Duration
}

func parseResilience(c *cli.Context) (resilienceConfig, error) {
	rc := resilienceConfig{
		healthInterval: c.Duration("health-interval"),
		healthFall:     c.Int("health-fall"), healthRise: c.Int("health-rise"),
		slowStart: c.Duration("slow-start"),
		maxConns:  c.Int("max-conns"), maxPerConn: c.Int("max-conns-per-backend"),
		queueTimeout: c.Duration("queue-timeout"), idleTimeout: c.Duration("idle-timeout"),
	}
	return rc, rc.check()
}

func (rc resilienceConfig) check() error {
	switch {
	case rc.healthInterval < 0:
		return errors.New("--health-interval must not be negative")
	case rc.healthFall < 1 || rc.healthRise < 1:
		return errors.New("--health-fall and --health-rise must be at least 1")
	case rc.slowStart < 0:
		return errors.New("--slow-start must not be negative")
	case rc.maxConns < 0 || rc.maxPerConn < 0:
		return errors.New("--max-conns and --max-conns-per-backend must not be negative")
	case rc.queueTimeout < 0:
		return errors.New("--queue-timeout must not be negative")
	case rc.idleTimeout < 0:
		return errors.New("--idle-timeout must not be negative")
	}
	return nil
}
