package main

import (
	"fmt"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// exampleConfig is the commented example of every config file key.
const exampleConfig = "fulcrum.example.yaml"

var (
	// exampleTopKey is a top-level key in the example, set or commented out ("# state-file: ...").
	exampleTopKey = regexp.MustCompile(`^(?:# ?)?([a-z][a-z0-9-]*):(?:\s|$)`)
	// exampleServiceKey is a key of a commented-out services: item ("#   - name: db").
	exampleServiceKey = regexp.MustCompile(`^#\s+(?:- )?([a-z][a-z0-9-]*):(?:\s|$)`)
)

// exampleKeys returns the top-level keys the example names and the keys its commented-out
// services: items name.
func exampleKeys(t *testing.T) (top, service map[string]bool) {
	t.Helper()
	data, err := os.ReadFile(repoFile(exampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	top, service = map[string]bool{}, map[string]bool{}
	inServices := false
	for _, line := range strings.Split(string(data), "\n") {
		if m := exampleTopKey.FindStringSubmatch(line); m != nil {
			top[m[1]] = true
			inServices = m[1] == servicesKey
			continue
		}
		if m := exampleServiceKey.FindStringSubmatch(line); m != nil && inServices {
			service[m[1]] = true
		}
	}
	return top, service
}

// configFileKeys are the top-level keys the config loader accepts: serve's long flag names but
// --config, and services.
func configFileKeys() map[string]bool {
	keys := map[string]bool{servicesKey: true}
	for _, name := range flagNames(withConfigFile(serveFlags())) {
		keys[name] = true
	}
	return keys
}

// serviceFileKeys are the keys a services: item accepts.
func serviceFileKeys() map[string]bool {
	keys := map[string]bool{}
	st := reflect.TypeOf(serviceSpec{})
	for i := range st.NumField() {
		name, _, _ := strings.Cut(st.Field(i).Tag.Get("yaml"), ",")
		keys[name] = true
	}
	return keys
}

// TestExampleConfigNamesEveryKey: fulcrum.example.yaml names (set or commented out) every key
// the config loader accepts, and none it refuses; its services: example names every key a
// service accepts.
func TestExampleConfigNamesEveryKey(t *testing.T) {
	top, service := exampleKeys(t)
	compareKeys(t, "top-level key", top, configFileKeys())
	compareKeys(t, "services: key", service, serviceFileKeys())
}

func compareKeys(t *testing.T, what string, named, accepted map[string]bool) {
	t.Helper()
	for k := range accepted {
		if !named[k] {
			t.Errorf("%s does not name the %s %q (add it, commented out if it changes behaviour)", exampleConfig, what, k)
		}
	}
	for k := range named {
		if !accepted[k] {
			t.Errorf("%s names the %s %q, which the config loader refuses", exampleConfig, what, k)
		}
	}
}

// TestExampleConfigLoadsAsDefaults: the example loads as it is, and what it sets are the
// defaults, so that it documents them and running with it changes nothing.
func TestExampleConfigLoadsAsDefaults(t *testing.T) {
	withFile, err := serveContext(t, "--config", repoFile(exampleConfig))
	if err != nil {
		t.Fatalf("%s does not load: %v", exampleConfig, err)
	}
	if _, err := parseConfig(withFile); err != nil {
		t.Fatalf("%s: %v", exampleConfig, err)
	}
	bare, err := serveContext(t)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(repoFile(exampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	var set map[string]any
	if err := yaml.Unmarshal(data, &set); err != nil {
		t.Fatal(err)
	}
	if len(set) == 0 {
		t.Fatalf("%s sets no key", exampleConfig)
	}
	for _, key := range slices.Sorted(maps.Keys(set)) {
		got, want := fmt.Sprint(withFile.Value(key)), fmt.Sprint(bare.Value(key))
		if got != want {
			t.Errorf("%s sets %s to %s, not its default %s (comment it out if it is an example)", exampleConfig, key, got, want)
		}
	}
}
