package etcdreg

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/pool/etcdreg/etcdtest"
)

// With etcd's authentication on, a Store that logs in as a user heartbeats (over its own
// keep-alive stream, which must carry the token), drains and watches; a wrong password is
// refused at Open.
func TestAuthenticatedUser(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := rawClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, step := range []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "root-pw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.UserAdd(ctx, "lb", "lb-pw"); return err },
		func() error { _, err := cli.RoleAdd(ctx, "registry"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "registry", "/fulcrum/", "/fulcrum0", 2) // read-write on the prefix
			return err
		},
		func() error { _, err := cli.UserGrantRole(ctx, "lb", "registry"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("set up authentication: %v", err)
		}
	}
	st := openStore(t, c, "/fulcrum", 2*time.Second, func(cfg *Config) { cfg.User, cfg.Password = "lb", "lb-pw" })
	sk := watch(t, st)
	beat(t, st, "web", "127.0.0.1:8080", 1)
	beat(t, st, "web", "127.0.0.1:8080", 0)
	if err := st.Drain(ctx, "web", "127.0.0.1:8080"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the drained backend in the sink", func() bool { e, _ := sk.get("web", "127.0.0.1:8080"); return e.Draining })
	// Renewals alone keep it for two TTLs through the Store's own keep-alive stream, opened
	// with the authenticated client. (etcd does not check permissions on lease renewals, so
	// this proves the stream works with auth on, not that it carries the token.)
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); {
		beat(t, st, "web", "127.0.0.1:8080", 0)
		time.Sleep(500 * time.Millisecond) // the simulated backend's heartbeat interval
	}
	if d, _ := sk.counts(); d != 0 {
		t.Fatalf("%d deletes of a backend renewed over the keep-alive stream with auth on", d)
	}

	cfg, err := ParseURL(c.URL("/fulcrum"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.TTL, cfg.User, cfg.Password, cfg.Logger = 2*time.Second, "lb", "wrong", quiet
	if bad, err := Open(cfg); err == nil {
		bad.Close()
		t.Fatal("Open with a wrong password succeeded")
	}
}

// Members that serve clients over TLS and require a client certificate: a Store configured
// with the CA, certificate and key heartbeats and watches; one without a client certificate
// cannot, and says etcd is unavailable rather than hanging.
func TestTLSWithClientCertificates(t *testing.T) {
	c := etcdtest.StartTLS(t, 3)
	withTLS := func(cfg *Config) { cfg.CACert, cfg.Cert, cfg.Key = c.TLS.CA, c.TLS.ClientCert, c.TLS.ClientKey }
	a, b := openStore(t, c, "/fulcrum", 2*time.Second, withTLS), openStore(t, c, "/fulcrum", 2*time.Second, withTLS)
	atB := watch(t, b)
	beat(t, a, "web", "127.0.0.1:8080", 1)
	beat(t, a, "web", "127.0.0.1:8080", 0)
	waitFor(t, time.Second, "the backend at B", func() bool { _, ok := atB.get("web", "127.0.0.1:8080"); return ok })

	anonymous := openStore(t, c, "/fulcrum", 2*time.Second, func(cfg *Config) { cfg.CACert = c.TLS.CA })
	start := time.Now()
	_, err := anonymous.Register(context.Background(), "web", "127.0.0.1:8081", netip.Addr{}, 1)
	if !errors.Is(err, ErrUnavailable) || time.Since(start) > anonymous.cfg.requestTimeout()+time.Second {
		t.Fatalf("heartbeat without a client certificate: %v after %v, want ErrUnavailable", err, time.Since(start))
	}
}
