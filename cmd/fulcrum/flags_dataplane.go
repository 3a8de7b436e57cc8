package main

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"

	"github.com/urfave/cli/v2"

	"github.com/fulcrumlb/fulcrum/listener"
)

// dataPlaneFlags choose how connections run: event loops over epoll (Linux), or a goroutine
// per connection direction (everywhere).
func dataPlaneFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "data-plane", Value: string(listener.DefaultDataPlane()), Usage: "how connections run: epoll (event loops, Linux only) or goroutine", EnvVars: env("DATA_PLANE")},
		&cli.IntFlag{Name: "loops", Value: 0, Usage: "event loops of the epoll data plane, one OS thread each; 0 is GOMAXPROCS-1, at least 1", EnvVars: env("LOOPS")},
	}
}

// dataPlaneConfig is the validated form of dataPlaneFlags.
type dataPlaneConfig struct {
	plane listener.DataPlane
	loops int // 0: listener.DefaultLoops()
}

func parseDataPlane(c *cli.Context) (dataPlaneConfig, error) {
	plane, err := listener.ParseDataPlane(c.String("data-plane"))
	if err != nil {
		return dataPlaneConfig{}, fmt.Errorf("--data-plane: %w", err)
	}
	dc := dataPlaneConfig{plane: plane, loops: c.Int("loops")}
	if dc.loops < 0 {
		return dataPlaneConfig{}, errors.New("--loops must not be negative")
	}
	return dc, nil
}

// warnLoops warns when --loops asks for more event loops than there are CPUs to run them:
// the loops then take turns on the CPUs, each waiting while another runs.
func (dc dataPlaneConfig) warnLoops(log *slog.Logger) {
	if n := runtime.NumCPU(); dc.plane == listener.PlaneEpoll && dc.loops > n {
		log.Warn(fmt.Sprintf("--loops %d is more than the %d CPUs available: event loops will wait for each other; use at most %d", dc.loops, n, n),
			"loops", dc.loops, "cpus", n)
	}
}

// loopCount is the number of event loops the epoll plane runs; 0 on the goroutine plane.
func (dc dataPlaneConfig) loopCount() int {
	if dc.plane != listener.PlaneEpoll {
		return 0
	}
	if dc.loops > 0 {
		return dc.loops
	}
	return listener.DefaultLoops()
}
