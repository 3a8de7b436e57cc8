package main

import (
	"context"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/listener/sniroute"
)

// SNI routing: services that name the same listen address share one listener, and each new
// connection goes to the service whose server-name pattern matches its TLS ClientHello (the
// one service of the address without patterns, if any, is its default). An address whose
// only service has no pattern is served as before, without reading any hello.

func sniFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "sni", Usage: "route TLS clients asking for a server name matching `NAME=PATTERN` (api.example.com or *.example.com) to service NAME; services naming one listen address share it, the one without patterns is its default (repeatable)", EnvVars: env("SNI")},
		&cli.DurationFlag{Name: "client-hello-timeout", Value: 5 * time.Second, Usage: "on an address routed by server name, how long a client may take to send its whole TLS ClientHello", EnvVars: env("CLIENT_HELLO_TIMEOUT")},
	}
}

// addSNIFlag applies one --sni NAME=PATTERN to its service.
func addSNIFlag(services []serviceConfig, v string) error {
	a, err := sniroute.ParseFlag(v)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(services, func(s serviceConfig) bool { return s.name == a.Service })
	if i < 0 {
		return fmt.Errorf("invalid value %q for --sni: no service named %q (define it with --service or in the config file)", v, a.Service)
	}
	services[i].sni = append(services[i].sni, a.Pattern)
	return nil
}

// parseSNIList reads the config file's sni: list of one service.
func parseSNIList(list []string) ([]sniroute.Pattern, error) {
	var out []sniroute.Pattern
	for _, s := range list {
		p, err := sniroute.ParsePattern(s)
		if err != nil {
			return nil, fmt.Errorf("sni: invalid pattern %q: %w", s, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// sharedAddr is one listen address and the services (indexes into the service list) on it.
type sharedAddr struct {
	addr     string
	services []int
}

// sharedAddrs groups the services' listen addresses, in the order first named. Addresses
// with port 0 are each a port of their own, never shared.
func sharedAddrs(services []serviceConfig) []sharedAddr {
	var out []sharedAddr
	for i, s := range services {
		for _, addr := range s.listen {
			j := slices.IndexFunc(out, func(a sharedAddr) bool { return a.addr == addr && !endsInPortZero(addr) })
			if j < 0 {
				out = append(out, sharedAddr{addr: addr})
				j = len(out) - 1
			}
			if !slices.Contains(out[j].services, i) {
				out[j].services = append(out[j].services, i)
			}
		}
	}
	return out
}

// routed reports whether the address needs an SNI router: more than one service, or a
// service with patterns.
func (a sharedAddr) routed(services []serviceConfig) bool {
	return len(a.services) > 1 || len(services[a.services[0]].sni) > 0
}

// buildSNITable makes the routing table of one address, with values of any kind.
func buildSNITable[S any](a sharedAddr, services []serviceConfig, value func(i int) S) (*sniroute.Table[S], error) {
	list := make([]sniroute.Service[S], 0, len(a.services))
	for _, i := range a.services {
		list = append(list, sniroute.Service[S]{Name: services[i].name, Patterns: services[i].sni, Value: value(i)})
	}
	return sniroute.Build(a.addr, list)
}

// checkSNI finds, before anything listens, the problems of every shared address: two
// services without patterns (which one would be the default?), or a pattern two claim.
func checkSNI(services []serviceConfig) []error {
	var errs []error
	for _, a := range sharedAddrs(services) {
		if !a.routed(services) {
			continue
		}
		if err := twoDefaults(a, services); err != nil {
			errs = append(errs, err)
		} else if _, err := buildSNITable(a, services, func(int) int { return 0 }); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// twoDefaults says which two services of a would both be its default.
func twoDefaults(a sharedAddr, services []serviceConfig) error {
	var defaults []int
	for _, i := range a.services {
		if len(services[i].sni) == 0 {
			defaults = append(defaults, i)
		}
	}
	if len(defaults) < 2 {
		return nil
	}
	who := func(i int) string {
		if i == 0 {
			return "--listen"
		}
		return "service " + services[i].name
	}
	return fmt.Errorf("%s %s: %s listens there too, and neither has an --sni pattern: at most one service per address may be its default (give the others --sni NAME=PATTERN)", who(defaults[1]), a.addr, who(defaults[0]))
}

// sniRouter is one routed address: its listener and router.
type sniRouter struct {
	ln     net.Listener
	router *listener.SNIRouter
}

// newSNIRouters builds the router of every routed address; lns[i] are services[i]'s
// listeners (a shared address's listener is the same value in each).
func newSNIRouters(cfg *config, services []*service, obs *observers, sh shared) ([]sniRouter, error) {
	confs := make([]serviceConfig, len(services))
	for i, s := range services {
		confs[i] = s.cfg
	}
	var out []sniRouter
	for _, a := range sharedAddrs(confs) {
		if !a.routed(confs) {
			continue
		}
		t, err := buildSNITable(a, confs, func(i int) *listener.Server { return services[i].srv })
		if err != nil {
			return nil, err
		}
		if err := listener.CheckSNIServers(sh.limit, routedServers(a, services)...); err != nil {
			return nil, err // a bug: every server shares --max-conns (newServer)
		}
		if obs.metrics != nil {
			obs.metrics.DeclareSNI(a.addr, patterned(a, confs))
		}
		first := services[a.services[0]]
		ln := first.lns[slices.Index(first.cfg.listen, a.addr)]
		out = append(out, sniRouter{ln: ln, router: &listener.SNIRouter{
			Listen:        a.addr,
			Routes:        t,
			HelloTimeout:  cfg.clientHelloTimeout,
			ProxyProtocol: first.cfg.traffic.proxy,
			Limit:         sh.limit,
			Totals:        sh.totals,
			Observer:      obs.sniObserver(),
			Logger:        cfg.log,
		}})
	}
	return out, nil
}

// routedListener reports whether ln is served by one of the routers.
func routedListener(routers []sniRouter, ln net.Listener) bool {
	return slices.ContainsFunc(routers, func(r sniRouter) bool { return r.ln == ln })
}

// shutdownRouters stops the routers before the services: a hello being read is then routed
// (or refused) while its service still takes connections.
func shutdownRouters(ctx context.Context, routers []sniRouter, cfg *config) {
	for _, r := range routers {
		if err := r.router.Shutdown(ctx); err != nil {
			cfg.log.Warn("drain timeout: closed clients still sending their TLS hello", "listen", r.router.Listen, "err", err)
		}
	}
}

// patterned are the names of a's services that have patterns.
func patterned(a sharedAddr, services []serviceConfig) []string {
	var out []string
	for _, i := range a.services {
		if len(services[i].sni) > 0 {
			out = append(out, services[i].name)
		}
	}
	return out
}

// sniText is the service's patterns as an operator writes them, for status.
func (sc serviceConfig) sniText() []string {
	out := make([]string, 0, len(sc.sni))
	for _, p := range sc.sni {
		out = append(out, p.String())
	}
	return out
}

// routedServers are the servers of a's services.
func routedServers(a sharedAddr, services []*service) []*listener.Server {
	out := make([]*listener.Server, 0, len(a.services))
	for _, i := range a.services {
		out = append(out, services[i].srv)
	}
	return out
}
