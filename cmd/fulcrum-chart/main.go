// Command fulcrum-chart draws the chart of a comparison that `fulcrum bench compare` saved:
//
//	fulcrum bench compare --out bench/RESULTS.md   # also writes bench/RESULTS.json
//	fulcrum-chart bench/RESULTS.json               # writes bench/RESULTS.png
//
// The chart lives in a command of its own so that the balancer's binary does not link the
// plotting library. It runs no load and reads nothing but the report it is given.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/fulcrumlb/fulcrum/bench"
	"github.com/fulcrumlb/fulcrum/bench/chart"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fulcrum-chart:", err)
		os.Exit(1)
	}
}

// run parses args, reads the report and writes the chart.
func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fulcrum-chart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "chart `FILE`, .png or .svg (default: the report's name with .png)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: fulcrum-chart [--out FILE] REPORT.json\n\n"+
			"Draws the comparison that `fulcrum bench compare` saved in REPORT.json.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("want exactly one report file, such as bench/RESULTS.json")
	}
	report := fs.Arg(0)
	if *out == "" {
		*out = strings.TrimSuffix(report, filepath.Ext(report)) + ".png"
	}
	if ext := filepath.Ext(*out); ext != ".png" && ext != ".svg" {
		return fmt.Errorf("--out %q: the chart's file name must end in .png or .svg", *out)
	}
	rep, err := bench.ReadReport(report)
	if err != nil {
		return err
	}
	if err := chart.Write(rep, *out); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "wrote", *out)
	return nil
}
