package etcdreg

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/fulcrumlb/fulcrum/pool"
)

// PasswordEnv is the environment variable the etcd password is read from, so that it never
// shows in a process listing.
const PasswordEnv = "FULCRUM_ETCD_PASSWORD"

// MinTTL is the shortest lease etcd grants: it raises shorter ones to about 1.5 election
// timeouts, so a smaller TTL would not mean what it says.
const MinTTL = 2 * time.Second

// Config says where the registry lives and how to reach it. Endpoints, Prefix and TTL are
// required; every other field's zero value is documented.
type Config struct {
	// Endpoints are the etcd members' client addresses, "host:port" each.
	Endpoints []string
	// Prefix is the key prefix, such as "/fulcrum": a backend's key is
	// Prefix + "/" + service + "/" + host:port. It starts with "/" and does not end with one.
	Prefix string
	// TTL is the lease of every backend: a backend nobody heartbeats for TTL is deleted by etcd.
	// At least MinTTL; etcd counts whole seconds, so it is rounded up.
	TTL time.Duration

	// CACert is a PEM file of the authorities that sign the members' certificates; "" means
	// the system's roots when TLS is on. Any of CACert, Cert and Key turns TLS on.
	CACert string
	// Cert and Key are a PEM client certificate and its key, for members that require one;
	// both or neither.
	Cert, Key string
	// User and Password authenticate as an etcd user; "" means no authentication. Password is
	// required with User (see PasswordEnv).
	User, Password string

	// RequestTimeout bounds every call to etcd, so that a write answers (with ErrUnavailable)
	// when the cluster cannot; zero means 3 s.
	RequestTimeout time.Duration
	// ProbeInterval is how often the cluster is read to keep Healthy current when no other
	// call does; zero means 1 s.
	ProbeInterval time.Duration
	// Logger receives the loss and recovery of the cluster; nil means slog.Default().
	Logger *slog.Logger
}

// ParseURL reads etcd://HOST:PORT[,HOST:PORT...]/PREFIX into a Config with Endpoints and
// Prefix set. Hosts are IP literals (IPv6 in brackets) or names; PREFIX is one or more
// segments of letters, digits, '.', '-' and '_', separated by '/'.
func ParseURL(s string) (Config, error) {
	rest, ok := strings.CutPrefix(s, "etcd://")
	if !ok {
		return Config{}, fmt.Errorf("registry %q: want etcd://HOST:PORT[,HOST:PORT...]/PREFIX", s)
	}
	hosts, prefix, ok := strings.Cut(rest, "/")
	if !ok || prefix == "" {
		return Config{}, fmt.Errorf("registry %q: missing /PREFIX after the endpoints", s)
	}
	if err := checkPrefix(prefix); err != nil {
		return Config{}, fmt.Errorf("registry %q: %w", s, err)
	}
	var eps []string
	for _, h := range strings.Split(hosts, ",") {
		ep, err := parseEndpoint(h)
		if err != nil {
			return Config{}, fmt.Errorf("registry %q: %w", s, err)
		}
		eps = append(eps, ep)
	}
	return Config{Endpoints: eps, Prefix: "/" + prefix}, nil
}

// parseEndpoint checks one HOST:PORT and returns it as net.JoinHostPort writes it.
func parseEndpoint(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty endpoint")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("endpoint %q: want HOST:PORT: %w", s, err)
	}
	if host == "" || strings.ContainsAny(host, "/@?#%") {
		return "", fmt.Errorf("endpoint %q: bad host", s)
	}
	if _, err := pool.ParsePort(port); err != nil {
		return "", fmt.Errorf("endpoint %q: port %q outside 1..65535", s, port)
	}
	return net.JoinHostPort(host, port), nil
}

func checkPrefix(p string) error {
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("prefix %q: empty, '.' or '..' segment", p)
		}
		for _, r := range seg {
			if !prefixRune(r) {
				return fmt.Errorf("prefix %q: character %q not allowed", p, r)
			}
		}
	}
	return nil
}

func prefixRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
		r == '.' || r == '-' || r == '_'
}

// Check reports the first problem with c, before anything connects.
func (c Config) Check() error {
	switch {
	case len(c.Endpoints) == 0:
		return errors.New("etcd: no endpoints")
	case !strings.HasPrefix(c.Prefix, "/") || checkPrefix(c.Prefix[1:]) != nil:
		return fmt.Errorf("prefix %q: want /SEGMENT[/SEGMENT...]", c.Prefix)
	case c.TTL < MinTTL:
		return fmt.Errorf("TTL %s is too short: etcd leases last at least %s", c.TTL, MinTTL)
	case (c.Cert == "") != (c.Key == ""):
		return errors.New("a client certificate needs both the cert and the key file")
	case c.User != "" && c.Password == "":
		return fmt.Errorf("etcd user %q needs a password (set %s)", c.User, PasswordEnv)
	case c.User == "" && c.Password != "":
		return errors.New("an etcd password without a user")
	}
	for _, ep := range c.Endpoints {
		if _, err := parseEndpoint(ep); err != nil {
			return fmt.Errorf("etcd endpoint: %w", err)
		}
	}
	return nil
}

// leaseSeconds is the TTL in etcd's whole seconds, rounded up so that a backend never
// leaves before its TTL.
func (c Config) leaseSeconds() int64 {
	return int64(math.Ceil(c.TTL.Seconds()))
}

func (c Config) requestTimeout() time.Duration {
	if c.RequestTimeout > 0 {
		return c.RequestTimeout
	}
	return 3 * time.Second
}

func (c Config) probeInterval() time.Duration {
	if c.ProbeInterval > 0 {
		return c.ProbeInterval
	}
	return time.Second
}

func (c Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

// clientConfig is the etcd client's configuration: quiet, non-blocking at start, and quick
// to reconnect once a member is back (gRPC's default backoff grows to two minutes).
func (c Config) clientConfig() (clientv3.Config, error) {
	tlsConf, err := c.tlsConfig()
	if err != nil {
		return clientv3.Config{}, err
	}
	return clientv3.Config{
		Endpoints:            c.Endpoints,
		TLS:                  tlsConf,
		Username:             c.User,
		Password:             c.Password,
		DialTimeout:          c.requestTimeout(),
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: c.requestTimeout(),
		Logger:               zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: c.requestTimeout(),
		})},
	}, nil
}

// tlsConfig loads the TLS files; nil when none is set.
func (c Config) tlsConfig() (*tls.Config, error) {
	if c.CACert == "" && c.Cert == "" && c.Key == "" {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CACert != "" {
		pem, err := os.ReadFile(c.CACert)
		if err != nil {
			return nil, fmt.Errorf("etcd CA certificates: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd CA certificates: no PEM certificate in %s", c.CACert)
		}
	}
	if c.Cert != "" {
		pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("etcd client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return conf, nil
}
