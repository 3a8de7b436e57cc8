// Command fulcrum is a TCP load balancer: backends register themselves by heartbeat on an
// HTTP admin port, and client connections are spliced to the one with the fewest connections.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/fulcrumlb/fulcrum/internal/buildinfo"
)

func main() {
	if err := newApp(&upgrades{}).Run(os.Args); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") { // several problems (serve --check): one line each
			fmt.Fprintln(os.Stderr, "fulcrum:", line)
		}
		os.Exit(exitCode(err)) // usage.go: 2 for a command line that cannot be run as written
	}
}

// newApp builds the command line; u hands SIGHUP upgrades to the process's first serve.
func newApp(u *upgrades) *cli.App {
	return &cli.App{
		Name:  "fulcrum",
		Usage: "a TCP load balancer with heartbeat registration and exact least-connections",
		// --version: module version, VCS revision, Go version
		Version:  buildinfo.Read().String(),
		Commands: withUsageErrors(append([]*cli.Command{withProfiling(serveCommand(u)), benchCommand()}, onlyFlags(clientCommands())...)), // client.go: status, add, remove, drain, undrain, heartbeat; bench.go: bench
		// usage.go: a misspelt command or a bad flag value is one line, not the usage text.
		Action:       unknownCommand,
		OnUsageError: onUsageError,
	}
}

// appVersion is the module version alone ("devel" for a build from a checkout); a release
// build may set it at link time (see package buildinfo).
func appVersion() string { return buildinfo.Read().Version }
