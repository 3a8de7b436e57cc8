package main

import (
	"github.com/urfave/cli/v2"
)

// metricsFlags are the flags of the metrics and status page concern.
func metricsFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "metrics", Value: true, EnvVars: env("METRICS"),
			Usage: "count connections, bytes and heartbeats with go-metrics and serve them at GET /metrics on the admin listener (--metrics=false: no instrumentation)"},
	}
}
