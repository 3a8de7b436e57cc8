package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fulcrumlb/fulcrum/admin"
)

// `fulcrum serve --check` checks a configuration as nginx -t and haproxy -c do: it reads the
// flags, the environment and --config as serve would, builds every service, resolves the
// static backends' names and checks the files serve would write, then reports each problem on
// a line of its own, or that the configuration is fine. It binds no socket and writes no file.

// checkFlag names serve's flag that checks instead of serving; it cannot be set from the file.
const checkFlag = "check"

func checkFlagDef() cli.Flag {
	return &cli.BoolFlag{Name: checkFlag, Usage: "check the configuration (flags, environment, --config, backend names, the files it would write), print one line per problem or \"configuration ok\", and exit; binds nothing"}
}

// resolveTimeout bounds the lookup of one static backend's name.
const resolveTimeout = 5 * time.Second

// checkConfig is serve --check: nil when the configuration would start, else every problem
// found, one error each.
func checkConfig(c *cli.Context) error {
	cfg, err := parseConfig(c)
	if err != nil {
		return err
	}
	problems := fileProblems(cfg)
	if err := stateFileProblem(cfg.stateFile); err != nil {
		problems = append(problems, err)
	}
	problems = append(problems, listenProblems(cfg)...)
	problems = append(problems, checkSNI(cfg.services)...) // sni.go: addresses several services share
	problems = append(problems, buildProblems(cfg)...)
	problems = append(problems, resolveProblems(c.Context, cfg)...)
	if len(problems) > 0 {
		return errors.Join(problems...)
	}
	static := 0
	for _, s := range cfg.services {
		static += len(s.backends)
	}
	fmt.Fprintf(c.App.Writer, "configuration ok: %d services, %d static backends\n", len(cfg.services), static)
	return nil
}

// stateFileProblem is the refusal serve would meet in an existing --state-file: a newer
// format. (A corrupt one is moved aside at start, which does not stop it.)
func stateFileProblem(path string) error {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil // missing: a first start; unreadable: fileProblems says so
	}
	if _, err := decodeState(data); errors.Is(err, errNewerState) {
		return fmt.Errorf("--state-file %s: %w", path, err)
	}
	return nil
}

// listenProblems checks every address serve would listen on, without listening: it must be
// HOST:PORT, and no two listeners may share one but services' (checkSNI judges those).
func listenProblems(cfg *config) []error {
	var errs []error
	seen := map[string]string{}
	add := func(who, addr string) {
		if _, err := net.ResolveTCPAddr("tcp", addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want HOST:PORT, such as 127.0.0.1:8000 or :8000", who, addr))
			return
		}
		if prev, dup := seen[addr]; dup && !endsInPortZero(addr) && (who == "--admin" || prev == "--admin") {
			errs = append(errs, fmt.Errorf("%s %s: %s listens there too", who, addr, prev))
			return
		}
		seen[addr] = who
	}
	for _, s := range cfg.services {
		who := "service " + s.name
		if s.name == cfg.services[0].name {
			who = "--listen"
		}
		for _, addr := range s.listen {
			add(who, addr)
		}
	}
	add("--admin", cfg.admin)
	return errs
}

func endsInPortZero(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port == "0"
}

// buildProblems builds every service's pool and the metrics over them, as serve does before
// it listens.
func buildProblems(cfg *config) []error {
	quiet := slog.New(slog.DiscardHandler)
	pools, err := newPools(cfg, quiet)
	if err != nil {
		return []error{err}
	}
	if cfg.metrics {
		if _, err := admin.NewServiceMetrics(metricsServices(pools)); err != nil {
			return []error{fmt.Errorf("--metrics: %w", err)}
		}
	}
	return nil
}

// resolveProblems looks up every static backend given by name.
func resolveProblems(ctx context.Context, cfg *config) []error {
	var errs []error
	for _, s := range cfg.services {
		for _, b := range s.backends {
			if _, err := netip.ParseAddr(b.Host); err == nil {
				continue
			}
			lctx, cancel := context.WithTimeout(ctx, resolveTimeout)
			_, err := net.DefaultResolver.LookupHost(lctx, b.Host)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("service %s: backend %s: cannot resolve %s: %w", s.name, b.Key(), b.Host, lookupReason(err)))
			}
		}
	}
	return errs
}

// lookupReason is why a lookup failed, in a few words.
func lookupReason(err error) error {
	var de *net.DNSError
	switch {
	case errors.As(err, &de) && de.IsNotFound:
		return errors.New("no such host")
	case errors.As(err, &de) && de.IsTimeout:
		return errors.New("the lookup timed out")
	case errors.As(err, &de):
		return errors.New(de.Err)
	}
	return err
}
