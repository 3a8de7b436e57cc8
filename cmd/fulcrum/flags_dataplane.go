package main

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fulcrumlb/fulcrum/listener"
)

// dataPlaneFlags choose how connections run: event loops over epoll (Linux), or a goroutine
// per connection direction (everywhere).
func dataPlaneFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "data-plane", Value: string(listener.DefaultDataPlane()), Usage: "how connections run: epoll (event loops, Linux only), sockmap (event loops that move long-lived connections into the kernel, which relays their bytes: Linux 5.10 or later with BPF sockmap support, as root or with CAP_BPF and CAP_NET_ADMIN) or goroutine", EnvVars: env("DATA_PLANE")},
		&cli.IntFlag{Name: "loops", Value: 0, Usage: "event loops of the epoll and sockmap data planes, one OS thread each; 0 is GOMAXPROCS-1, at least 1", EnvVars: env("LOOPS")},
		&cli.DurationFlag{Name: "sockmap-after", Value: listener.DefaultSockmapAfter, Usage: fmt.Sprintf("on the sockmap data plane, how long a connection lives on the user-space relay before the kernel takes it over; 0 moves every connection at once. With a positive value, a connection moving bulk (over 32 MiB/s on average, or a send queue over 64 KiB) stays on the relay, where TCP flow control holds its sender. The kernel maps hold the connections of --max-conns, or %d when it is 0; the rest stay on the relay", listener.DefaultSockmapConns), EnvVars: env("SOCKMAP_AFTER")},
	}
}

// dataPlaneConfig is the validated form of dataPlaneFlags.
type dataPlaneConfig struct {
	plane listener.DataPlane
	loops int           // 0: listener.DefaultLoops()
	after time.Duration // --sockmap-after; 0 moves every connection at once
}

func parseDataPlane(c *cli.Context) (dataPlaneConfig, error) {
	plane, err := listener.ParseDataPlane(c.String("data-plane"))
	if err != nil {
		return dataPlaneConfig{}, fmt.Errorf("--data-plane: %w", err)
	}
	dc := dataPlaneConfig{plane: plane, loops: c.Int("loops"), after: c.Duration("sockmap-after")}
	if dc.loops < 0 {
		return dataPlaneConfig{}, errors.New("--loops must not be negative")
	}
	if dc.after < 0 {
		return dataPlaneConfig{}, fmt.Errorf("invalid value %s for --sockmap-after: want 0 or more, such as 100ms", dc.after)
	}
	if plane == listener.PlaneSockmap {
		if err := listener.CheckSockmap(); err != nil {
			return dataPlaneConfig{}, fmt.Errorf("--data-plane sockmap: %w", err)
		}
	}
	return dc, nil
}

// newLoops makes the event loops of the epoll and sockmap planes; nil on the goroutine plane.
// The sockmap maps hold maxConns connections (0: the default). parseDataPlane checked that
// the kernel side loads; should it fail now all the same, the loops are nil and each
// Server's Serve fails with the reason, which stops the process.
func (dc dataPlaneConfig) newLoops(maxConns int) *listener.EventLoops {
	switch dc.plane {
	case listener.PlaneEpoll:
		return listener.NewEventLoops(dc.loops)
	case listener.PlaneSockmap:
		after := dc.after
		if after == 0 {
			after = -1 // at once
		}
		el, err := listener.NewSockmapLoops(dc.loops, listener.SockmapConfig{After: after, MaxConns: maxConns})
		if err != nil {
			return nil
		}
		return el
	}
	return nil
}

// warnLoops warns when --loops asks for more event loops than there are CPUs to run them:
// the loops then take turns on the CPUs, each waiting while another runs.
func (dc dataPlaneConfig) warnLoops(log *slog.Logger) {
	if n := runtime.NumCPU(); dc.plane != listener.PlaneGoroutine && dc.loops > n {
		log.Warn(fmt.Sprintf("--loops %d is more than the %d CPUs available: event loops will wait for each other; use at most %d", dc.loops, n, n),
			"loops", dc.loops, "cpus", n)
	}
}

// loopCount is the number of event loops the epoll or sockmap plane runs; 0 on the goroutine
// plane.
func (dc dataPlaneConfig) loopCount() int {
	if dc.plane == listener.PlaneGoroutine {
		return 0
	}
	if dc.loops > 0 {
		return dc.loops
	}
	return listener.DefaultLoops()
}
