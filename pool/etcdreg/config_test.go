package etcdreg

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/pool/etcdreg/etcdtest"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		name, in  string
		endpoints []string
		prefix    string
	}{
		{"one", "etcd://127.0.0.1:2379/fulcrum", []string{"127.0.0.1:2379"}, "/fulcrum"},
		{"three", "etcd://10.0.0.1:2379,10.0.0.2:2379,etcd-3.example:2380/fulcrum", []string{"10.0.0.1:2379", "10.0.0.2:2379", "etcd-3.example:2380"}, "/fulcrum"},
		{"ipv6", "etcd://[::1]:2379/a/b", []string{"[::1]:2379"}, "/a/b"},
		{"segments", "etcd://h:1/lb.prod_eu-1/x", []string{"h:1"}, "/lb.prod_eu-1/x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseURL(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cfg.Endpoints, tc.endpoints) || cfg.Prefix != tc.prefix {
				t.Fatalf("ParseURL(%q) = %v %q, want %v %q", tc.in, cfg.Endpoints, cfg.Prefix, tc.endpoints, tc.prefix)
			}
		})
	}
}

func TestParseURLRefuses(t *testing.T) {
	for _, tc := range []struct{ name, in, says string }{
		{"empty", "", "want etcd://"},
		{"scheme", "http://127.0.0.1:2379/fulcrum", "want etcd://"},
		{"no prefix", "etcd://127.0.0.1:2379", "missing /PREFIX"},
		{"empty prefix", "etcd://127.0.0.1:2379/", "missing /PREFIX"},
		{"trailing slash", "etcd://127.0.0.1:2379/fulcrum/", "empty"},
		{"double slash", "etcd://127.0.0.1:2379/a//b", "empty"},
		{"dot dot", "etcd://127.0.0.1:2379/a/..", "'..'"},
		{"space in prefix", "etcd://127.0.0.1:2379/a b", "not allowed"},
		{"no port", "etcd://127.0.0.1/fulcrum", "HOST:PORT"},
		{"port zero", "etcd://127.0.0.1:0/fulcrum", "outside 1..65535"},
		{"port big", "etcd://127.0.0.1:65536/fulcrum", "outside 1..65535"},
		{"port leading zero", "etcd://127.0.0.1:02379/fulcrum", "outside 1..65535"},
		{"port name", "etcd://127.0.0.1:etcd/fulcrum", "outside 1..65535"},
		{"port with a sign", "etcd://127.0.0.1:+2379/fulcrum", "outside 1..65535"},
		{"empty endpoint", "etcd://127.0.0.1:2379,/fulcrum", "empty endpoint"},
		{"no host", "etcd://:2379/fulcrum", "bad host"},
		{"user info", "etcd://u@h:2379/fulcrum", "bad host"},
		{"query", "etcd://h:2379/fulcrum?x=1", "not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseURL(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("ParseURL(%q) = %v, want an error saying %q", tc.in, err, tc.says)
			}
		})
	}
}

func TestConfigCheck(t *testing.T) {
	good := Config{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/fulcrum", TTL: 2 * time.Second}
	if err := good.Check(); err != nil {
		t.Fatalf("a good config: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		says   string
	}{
		{"ttl below 2s", func(c *Config) { c.TTL = 1999 * time.Millisecond }, "etcd leases last at least 2s"},
		{"no ttl", func(c *Config) { c.TTL = 0 }, "etcd leases last at least 2s"},
		{"no endpoints", func(c *Config) { c.Endpoints = nil }, "no endpoints"},
		{"bad endpoint", func(c *Config) { c.Endpoints = []string{"h"} }, "HOST:PORT"},
		{"relative prefix", func(c *Config) { c.Prefix = "fulcrum" }, "want /SEGMENT"},
		{"cert without key", func(c *Config) { c.Cert = "c.pem" }, "both the cert and the key"},
		{"key without cert", func(c *Config) { c.Key = "k.pem" }, "both the cert and the key"},
		{"user without password", func(c *Config) { c.User = "lb" }, PasswordEnv},
		{"password without user", func(c *Config) { c.Password = "x" }, "without a user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.change(&c)
			err := c.Check()
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Check() = %v, want an error saying %q", err, tc.says)
			}
			if _, err := Open(c); err == nil {
				t.Fatal("Open accepted what Check refuses")
			}
		})
	}
}

func TestLeaseSecondsRoundUp(t *testing.T) {
	for ttl, want := range map[time.Duration]int64{2 * time.Second: 2, 2500 * time.Millisecond: 3, time.Minute: 60} {
		if got := (Config{TTL: ttl}).leaseSeconds(); got != want {
			t.Errorf("TTL %v: lease of %d s, want %d", ttl, got, want)
		}
	}
}

func TestTLSConfig(t *testing.T) {
	dir := t.TempDir()
	files, err := etcdtest.NewTLSFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := files.ClientCert, files.ClientKey
	bogus := filepath.Join(dir, "bogus.pem")
	if err := os.WriteFile(bogus, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	none, err := Config{}.tlsConfig()
	if none != nil || err != nil {
		t.Fatalf("no TLS files: %v, %v; want no TLS", none, err)
	}
	conf, err := Config{CACert: files.CA, Cert: certFile, Key: keyFile}.tlsConfig()
	if err != nil || conf.RootCAs == nil || len(conf.Certificates) != 1 {
		t.Fatalf("CA, cert and key: %v, %+v", err, conf)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		says string
	}{
		{"missing CA", Config{CACert: filepath.Join(dir, "none.pem")}, "CA certificates"},
		{"CA not PEM", Config{CACert: bogus}, "no PEM certificate"},
		{"cert not PEM", Config{Cert: bogus, Key: keyFile}, "client certificate"},
		{"key mismatch", Config{Cert: certFile, Key: bogus}, "client certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.cfg.tlsConfig(); err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("tlsConfig() = %v, want an error saying %q", err, tc.says)
			}
		})
	}
}

// FuzzParseURL checks that ParseURL never panics, and that whatever it accepts makes a valid
// Config once given a TTL.
func FuzzParseURL(f *testing.F) {
	f.Add("etcd://127.0.0.1:2379/fulcrum")
	f.Add("etcd://[::1]:2379,h:1/a/b")
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := ParseURL(s)
		if err != nil {
			return
		}
		cfg.TTL = MinTTL
		if err := cfg.Check(); err != nil {
			t.Fatalf("ParseURL(%q) accepted a config Check refuses: %v", s, err)
		}
		if len(cfg.Endpoints) == 0 || strings.HasSuffix(cfg.Prefix, "/") {
			t.Fatalf("ParseURL(%q) = %+v", s, cfg)
		}
	})
}
