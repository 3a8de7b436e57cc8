package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// serveContext runs serve's flag parsing and config loading with args, and returns the context
// its Action would have seen (the balancer is not started).
func serveContext(t *testing.T, args ...string) (*cli.Context, error) {
	t.Helper()
	var got *cli.Context
	cmd := serveCommand(testUpgrades)
	cmd.Action = func(c *cli.Context) error { got = c; return nil }
	app := &cli.App{Name: "fulcrum", Commands: []*cli.Command{cmd}, Writer: &strings.Builder{}, ErrWriter: &strings.Builder{}}
	err := app.Run(append([]string{"fulcrum", "serve"}, args...))
	return got, err
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fulcrum.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fileValue is a value for flag f that differs from its default: its YAML text and a check that
// the parsed context holds it. It fails the test for a flag type it does not know, so that a
// new flag type cannot go untested.
func fileValue(t *testing.T, f cli.Flag) (yaml string, check func(c *cli.Context) bool) {
	name := f.Names()[0]
	switch f := f.(type) {
	case *cli.StringFlag, *cli.PathFlag:
		v := "from-file-" + name
		return fmt.Sprintf("%q", v), func(c *cli.Context) bool { return c.String(name) == v }
	case *cli.StringSliceFlag:
		return `["a-` + name + `", "b"]`, func(c *cli.Context) bool {
			return slices.Equal(c.StringSlice(name), []string{"a-" + name, "b"})
		}
	case *cli.DurationFlag:
		return "1234s", func(c *cli.Context) bool { return c.Duration(name) == 1234*time.Second }
	case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag, *cli.Uint64Flag:
		return "4321", func(c *cli.Context) bool { return fmt.Sprint(c.Value(name)) == "4321" }
	case *cli.BoolFlag:
		v := !f.Value
		return fmt.Sprint(v), func(c *cli.Context) bool { return c.Bool(name) == v }
	case *cli.Float64Flag:
		return "12.5", func(c *cli.Context) bool { return c.Float64(name) == 12.5 }
	}
	t.Fatalf("flag --%s: no test value for type %T; extend fileValue", name, f)
	return "", nil
}

// Every serve flag, whoever added it, can be set from the config file.
func TestEveryServeFlagSettableFromConfigFile(t *testing.T) {
	var yaml strings.Builder
	checks := map[string]func(*cli.Context) bool{}
	for _, f := range serveFlags() {
		name := f.Names()[0]
		if name == configFlag {
			continue
		}
		v, check := fileValue(t, f)
		fmt.Fprintf(&yaml, "%s: %s\n", name, v)
		checks[name] = check
	}
	c, err := serveContext(t, "--config", writeConfig(t, yaml.String()))
	if err != nil {
		t.Fatalf("loading %s: %v", yaml.String(), err)
	}
	for name, check := range checks {
		if !check(c) {
			t.Errorf("--%s = %v: not the value in the file", name, c.Value(name))
		}
	}
}

// withConfigFile must know every flag type serve uses: a new one panics here, not in production.
func TestWithConfigFileKnowsEveryServeFlag(t *testing.T) {
	if v := panicOf(func() { serveCommand(testUpgrades) }); v != nil {
		t.Fatal(v)
	}
	if panicOf(func() { withConfigFile([]cli.Flag{&cli.TimestampFlag{Name: "x"}}) }) == nil {
		t.Error("an unknown flag type did not panic")
	}
}

func panicOf(f func()) (v any) {
	defer func() { v = recover() }()
	f()
	return nil
}

func TestConfigFileOverriddenByFlagsAndEnvironment(t *testing.T) {
	path := writeConfig(t, "listen: \":7000\"\nttl: 30s\nbackend: 10.0.0.5:80\nretries: 5\n")
	t.Setenv("FULCRUM_TTL", "7s")
	c, err := serveContext(t, "--config", path, "--listen", ":1234")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.String("listen"); got != ":1234" {
		t.Errorf("listen = %q: the flag must win", got)
	}
	if got := c.Duration("ttl"); got != 7*time.Second {
		t.Errorf("ttl = %v: the environment must win", got)
	}
	if got := c.StringSlice("backend"); !slices.Equal(got, []string{"10.0.0.5:80"}) {
		t.Errorf("backend = %q: a scalar in the file is a list of one", got)
	}
	if got := c.Int("retries"); got != 5 {
		t.Errorf("retries = %d from the file, want 5", got)
	}
	if got := c.Duration("sweep-interval"); got != 10*time.Second {
		t.Errorf("sweep-interval = %v: unset everywhere, want the default", got)
	}
}

func TestConfigFileFromEnvironment(t *testing.T) {
	t.Setenv("FULCRUM_CONFIG", writeConfig(t, "balance: hash\n"))
	c, err := serveContext(t)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.String("balance"); got != "hash" {
		t.Errorf("balance = %q, want hash from FULCRUM_CONFIG's file", got)
	}
}

func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", "listen: \":1\"\nlsiten: \":2\"\n", `unknown key "lsiten"`},
		{"config key", "config: other.yaml\n", `unknown key "config"`},
		{"bad yaml", "listen: [\n", "not a YAML map"},
		{"not a map", "- a\n- b\n", "not a YAML map"},
		{"wrong type", "ttl: 30\n", "ttl"},
		{"bad duration", "ttl: soon\n", "ttl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.yaml)
			_, err := serveContext(t, "--config", path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %v: want one naming %s and %q", err, path, tc.want)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope.yaml")
		_, err := serveContext(t, "--config", path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "no such file") {
			t.Errorf("error %v: want one naming the missing file", err)
		}
	})
}

// The shipped example loads and passes serve's own validation.
func TestExampleConfigLoads(t *testing.T) {
	c, err := serveContext(t, "--config", filepath.Join("..", "..", "fulcrum.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig(c)
	if err != nil {
		t.Fatalf("example config does not validate: %v", err)
	}
	if cfg.listen != ":8000" || cfg.ttl != time.Minute || len(cfg.services[0].backends) != 0 { // its static backends are commented out
		t.Errorf("example config parsed as %+v", cfg)
	}
}
