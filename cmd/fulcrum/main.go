// Command fulcrum is a TCP load balancer: backends register themselves by heartbeat on an
// HTTP admin port, and client connections are spliced to the one with the fewest connections.
package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
)

// version is set at link time (-ldflags "-X main.version=v1.2.3"); otherwise the module
// version from the build info is used.
var version = ""

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
		Name:     "fulcrum",
		Usage:    "a TCP load balancer with heartbeat registration and exact least-connections",
		Version:  appVersion(),
		Commands: withUsageErrors(append([]*cli.Command{withProfiling(serveCommand(u)), benchCommand()}, onlyFlags(clientCommands())...)), // client.go: status, add, remove, drain, undrain, heartbeat; bench.go: bench
		// usage.go: a misspelt command or a bad flag value is one line, not the usage text.
		Action:       unknownCommand,
		OnUsageError: onUsageError,
	}
}

func appVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}
