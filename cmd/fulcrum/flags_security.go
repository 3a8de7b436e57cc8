package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/time/rate"
)

// securityFlags are the admin API's access rules.
func securityFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "admin-token", Usage: "require `TOKEN` (Authorization: Bearer) for add, remove, drain and undrain; prefer the env variable or --admin-token-file over the command line", EnvVars: env("ADMIN_TOKEN")},
		&cli.StringFlag{Name: "admin-token-file", Usage: "read the admin token from `FILE` (surrounding white space trimmed)", EnvVars: env("ADMIN_TOKEN_FILE")},
		&cli.BoolFlag{Name: "admin-token-read", Usage: "require the token for status, metrics and the dashboard too (healthz stays open)", EnvVars: env("ADMIN_TOKEN_READ")},
		&cli.StringSliceFlag{Name: "allow-backend", Usage: "only backends in `CIDR` may register (repeatable; default any; needed for link-local)", EnvVars: env("ALLOW_BACKEND")},
		&cli.IntFlag{Name: "max-backends", Value: 10000, Usage: "registry size beyond which add of a new backend gets 429 (0: no cap)", EnvVars: env("MAX_BACKENDS")},
		&cli.StringFlag{Name: "admin-rate", Value: "20/40", Usage: "per-client limit on mutating admin requests, `RATE[/BURST]` in requests per second (burst defaults to twice the rate; 0 or off: none)", EnvVars: env("ADMIN_RATE")},
	}
}

// securityConfig is the validated form of securityFlags.
type securityConfig struct {
	token       string
	tokenRead   bool
	allow       []netip.Prefix
	maxBackends int
	rate        rate.Limit
	burst       int
}

func parseSecurity(c *cli.Context) (*securityConfig, error) {
	sc := &securityConfig{tokenRead: c.Bool("admin-token-read"), maxBackends: c.Int("max-backends")}
	var err error
	if sc.token, err = readToken(c.String("admin-token"), c.String("admin-token-file")); err != nil {
		return nil, err
	}
	if sc.tokenRead && sc.token == "" {
		return nil, errors.New("--admin-token-read needs --admin-token or --admin-token-file")
	}
	if sc.maxBackends < 0 {
		return nil, errors.New("--max-backends must not be negative")
	}
	for _, s := range c.StringSlice("allow-backend") {
		p, err := parsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("--allow-backend: %w", err)
		}
		sc.allow = append(sc.allow, p)
	}
	if sc.rate, sc.burst, err = parseRate(c.String("admin-rate")); err != nil {
		return nil, fmt.Errorf("--admin-rate: %w", err)
	}
	return sc, nil
}

// readToken takes the token from the flag (or its env variable) or from a file, never both.
// An empty token from a file is refused: it would silently leave the API open.
func readToken(token, file string) (string, error) {
	if file != "" {
		if token != "" {
			return "", errors.New("give --admin-token or --admin-token-file, not both")
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--admin-token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return "", fmt.Errorf("--admin-token-file %s: empty token", file)
		}
	}
	token = strings.TrimSpace(token)
	for _, r := range token {
		if r < 0x20 || r == 0x7f {
			return "", errors.New("admin token: control characters cannot be sent in a header")
		}
	}
	return token, nil
}

// parsePrefix reads a CIDR, or a single address as a one-address network.
func parsePrefix(s string) (netip.Prefix, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		ip = ip.Unmap()
		return netip.PrefixFrom(ip, ip.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q: want an address or a CIDR, such as 10.0.0.7 or 10.0.0.0/8", s)
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

var rateSyntax = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)(?:/([1-9][0-9]{0,5}))?$`)

// parseRate reads RATE[/BURST]: "20/40" is 20 requests per second with bursts of 40, "20"
// the same (burst twice the rate, at least 1), "0.5/3" one every two seconds, bursts of 3,
// and "0" or "off" no limit.
func parseRate(s string) (rate.Limit, int, error) {
	if s == "off" {
		return 0, 0, nil
	}
	m := rateSyntax.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, fmt.Errorf("%q: want RATE[/BURST], such as 20/40, or off", s)
	}
	r, err := strconv.ParseFloat(m[1], 64)
	if err != nil || r > 1e6 {
		return 0, 0, fmt.Errorf("%q: rate must be at most 1000000", s)
	}
	if r == 0 {
		return 0, 0, nil
	}
	burst := max(int(2*r), 1)
	if m[2] != "" {
		burst, _ = strconv.Atoi(m[2]) // cannot fail: at most six digits
	}
	return rate.Limit(r), burst, nil
}
