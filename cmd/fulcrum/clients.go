package main

import (
	"errors"
	"net/netip"

	"github.com/urfave/cli/v2"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/listener/clientlimit"
)

// Per-client bounds: each service keeps one client address (an IPv6 client by its /64) from
// taking every slot. The top-level flags set them for every service; a services: item may
// set its own. They are checked at accept, before any backend is picked or dialed.

func clientBoundFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "max-conns-per-client", Usage: "connections one client address may hold open at once, per service (an IPv6 client by its /64); 0: no limit", EnvVars: env("MAX_CONNS_PER_CLIENT")},
		&cli.StringFlag{Name: "client-rate", Usage: "new connections a second one client address may open, per service, as `R[/BURST]` (such as 20/40); off by default", EnvVars: env("CLIENT_RATE")},
		&cli.StringSliceFlag{Name: "allow-client", Usage: "only clients in `CIDR` are served (a bare address is its /32 or /128; repeatable; per service)", EnvVars: env("ALLOW_CLIENT")},
		&cli.StringSliceFlag{Name: "deny-client", Usage: "clients in `CIDR` are closed at accept, even when allowed (a bare address is its /32 or /128; repeatable; per service)", EnvVars: env("DENY_CLIENT")},
	}
}

// parseClientBounds reads the top-level per-client flags.
func parseClientBounds(c *cli.Context) (clientlimit.Config, error) {
	return clientBounds(c.Int("max-conns-per-client"), c.String("client-rate"), c.StringSlice("allow-client"), c.StringSlice("deny-client"))
}

// clientBounds checks the four settings, from the flags or a services: item.
func clientBounds(maxConns int, rate string, allow, deny []string) (clientlimit.Config, error) {
	var cfg clientlimit.Config
	if maxConns < 0 {
		return cfg, errors.New("--max-conns-per-client must not be negative")
	}
	cfg.MaxConns = maxConns
	var err error
	if cfg.Rate, err = clientlimit.ParseRate(rate); err != nil {
		return cfg, err
	}
	if cfg.Allow, err = clientCIDRs("allow-client", allow); err != nil {
		return cfg, err
	}
	cfg.Deny, err = clientCIDRs("deny-client", deny)
	return cfg, err
}

func clientCIDRs(flag string, list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		p, err := clientlimit.ParseClientCIDR(flag, s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// boundsOn reports whether cfg bounds anything: only then does a service get a table.
func boundsOn(cfg clientlimit.Config) bool {
	return cfg.MaxConns > 0 || cfg.Rate.On() || len(cfg.Allow) > 0 || len(cfg.Deny) > 0
}

// newClientTable is a service's per-client table; nil when it has no bounds.
func newClientTable(cfg clientlimit.Config) *clientlimit.Table {
	if !boundsOn(cfg) {
		return nil
	}
	return clientlimit.New(cfg)
}

// applyClientSpec applies a services: item's per-client keys over the top-level ones.
func (spec serviceSpec) applyClientSpec(cfg *clientlimit.Config) error {
	maxConns, rate := cfg.MaxConns, cfg.Rate.String()
	setIf(&maxConns, spec.MaxConnsPerClient)
	setIf(&rate, spec.ClientRate)
	allow, deny := prefixStrings(cfg.Allow), prefixStrings(cfg.Deny)
	if spec.AllowClient != nil {
		allow = spec.AllowClient
	}
	if spec.DenyClient != nil {
		deny = spec.DenyClient
	}
	c, err := clientBounds(maxConns, rate, allow, deny)
	if err != nil {
		return err
	}
	*cfg = c
	return nil
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// topClients is a service's clients with the most open connections, for status; nil when the
// service has no per-client table.
func topClients(t *clientlimit.Table) func(n int) []admin.ClientConns {
	if t == nil {
		return nil
	}
	return func(n int) []admin.ClientConns {
		top := t.Top(n)
		out := make([]admin.ClientConns, len(top))
		for i, c := range top {
			out[i] = admin.ClientConns{Client: c.Addr.String(), Open: c.Open}
		}
		return out
	}
}
