package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fulcrumlb/fulcrum/listener"
)

// operatingFlags are serve's flags for fitting into an operator's tools: a config file, the
// PROXY protocol on both sides, and an access log.
func operatingFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: configFlag, Usage: "read options from this YAML `FILE` (flat keys named like the long flags); flags and environment override it", EnvVars: env("CONFIG")},
		&cli.StringFlag{Name: "proxy-protocol", Usage: "send a PROXY protocol header (`VERSION` v1 or v2) to each backend; empty for none", EnvVars: env("PROXY_PROTOCOL")},
		&cli.StringSliceFlag{Name: "accept-proxy-protocol", Usage: "`CIDR` of balancers in front that must send a PROXY header, which is believed (repeatable); a header from any other peer is refused", EnvVars: env("ACCEPT_PROXY_PROTOCOL")},
		&cli.DurationFlag{Name: "proxy-header-timeout", Value: 3 * time.Second, Usage: "with --accept-proxy-protocol, how long to wait for a client's PROXY header (or, from other peers, its first bytes)", EnvVars: env("PROXY_HEADER_TIMEOUT")},
		&cli.StringFlag{Name: "access-log", Usage: "append one JSON line per finished connection to `PATH` (- for stderr)", EnvVars: env("ACCESS_LOG")},
	}
}

// operatingConfig is the validated form of operatingFlags.
type operatingConfig struct {
	proxy     listener.ProxyProtocol
	accessLog string // "" none, "-" stderr
}

func parseOperating(c *cli.Context) (operatingConfig, error) {
	var oc operatingConfig
	var err error
	if oc.proxy.Send, err = listener.ParseProxyVersion(c.String("proxy-protocol")); err != nil {
		return oc, fmt.Errorf("--proxy-protocol: %w", err)
	}
	for _, s := range c.StringSlice("accept-proxy-protocol") {
		p, err := parsePrefix(s) // flags_security.go: a bare address is its /32 or /128
		if err != nil {
			return oc, fmt.Errorf("--accept-proxy-protocol: %w", err)
		}
		oc.proxy.Accept = append(oc.proxy.Accept, p)
	}
	if oc.proxy.HeaderTimeout = c.Duration("proxy-header-timeout"); oc.proxy.HeaderTimeout <= 0 {
		return oc, fmt.Errorf("--proxy-header-timeout must be positive")
	}
	oc.accessLog = c.String("access-log")
	return oc, nil
}
