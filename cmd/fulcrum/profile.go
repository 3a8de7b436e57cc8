package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/urfave/cli/v2"
)

// withProfiling adds the hidden --cpuprofile flag to cmd: the command's whole run, drain
// included, is written to FILE as a pprof CPU profile. It serves measuring the data path
// (go tool pprof -top FILE), not production.
func withProfiling(cmd *cli.Command) *cli.Command {
	cmd.Flags = append(cmd.Flags, &cli.StringFlag{Name: "cpuprofile", Hidden: true, Usage: "write a CPU profile to `FILE`"})
	action := cmd.Action
	cmd.Action = func(c *cli.Context) error {
		path := c.String("cpuprofile")
		if path == "" {
			return action(c)
		}
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
		return action(c)
	}
	return cmd
}
