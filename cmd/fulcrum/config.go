package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
	"gopkg.in/yaml.v3"
)

// configFlag names the flag that points at the YAML config file; it cannot itself be set there.
const configFlag = "config"

// servicesKey is the config file's one key that is not a flag: the list of services.
const servicesKey = "services"

// withConfigFile returns flags with each one replaced by its altsrc counterpart, so that serve's
// Before hook can fill it from the config file when neither the command line nor the
// environment set it. Every helper adds its own flags to serveFlags, so this goes by type: a
// flag type it does not know is a programming error caught by the tests (and at start-up),
// never a flag that silently cannot be set from the file.
func withConfigFile(flags []cli.Flag) []cli.Flag {
	out := make([]cli.Flag, len(flags))
	for i, f := range flags {
		out[i] = fileFlag(f)
	}
	return out
}

func fileFlag(f cli.Flag) cli.Flag {
	switch f := f.(type) {
	case *cli.StringFlag:
		if f.Name == configFlag {
			return f
		}
		return altsrc.NewStringFlag(f)
	case *cli.StringSliceFlag:
		return altsrc.NewStringSliceFlag(f)
	case *cli.DurationFlag:
		return altsrc.NewDurationFlag(f)
	case *cli.IntFlag:
		return altsrc.NewIntFlag(f)
	case *cli.Int64Flag:
		return altsrc.NewInt64Flag(f)
	case *cli.UintFlag:
		return altsrc.NewUintFlag(f)
	case *cli.Uint64Flag:
		return altsrc.NewUint64Flag(f)
	case *cli.BoolFlag:
		return altsrc.NewBoolFlag(f)
	case *cli.Float64Flag:
		return altsrc.NewFloat64Flag(f)
	case *cli.PathFlag:
		return altsrc.NewPathFlag(f)
	case *cli.GenericFlag:
		return altsrc.NewGenericFlag(f)
	case *cli.IntSliceFlag:
		return altsrc.NewIntSliceFlag(f)
	case *cli.Int64SliceFlag:
		return altsrc.NewInt64SliceFlag(f)
	case *cli.Float64SliceFlag:
		return altsrc.NewFloat64SliceFlag(f)
	}
	panic(fmt.Sprintf("flag --%s: type %T cannot be read from the config file; add it to fileFlag", f.Names()[0], f))
}

// loadConfigFile is serve's Before hook: it reads the file named by --config (if any) into the
// flags that the command line and the environment left unset.
func loadConfigFile(flags []cli.Flag) cli.BeforeFunc {
	return func(c *cli.Context) error {
		path := c.String(configFlag)
		if path == "" {
			return nil
		}
		src, err := readConfigFile(path, flags)
		if err != nil {
			return err
		}
		if err := altsrc.ApplyInputSourceValues(c, src, flags); err != nil {
			return fmt.Errorf("config file %s: %w", path, err)
		}
		return nil
	}
}

// readConfigFile parses a YAML map whose keys are long flag names (and services, a list that
// services.go reads). Unknown keys are an
// error (a misspelt key must not be silently ignored), and a few natural spellings are accepted:
// a scalar where a list is expected is a list of one, and a number or bool where a string is
// expected is its text.
func readConfigFile(path string, flags []cli.Flag) (altsrc.InputSourceContext, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	entries, err := configEntries(data)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("config file %s sets nothing (it is empty or only comments): write keys named like serve's long flags, such as listen: \":8000\"", path)
	}
	values := make(map[any]any, len(entries))
	for _, e := range entries {
		if e.key == servicesKey {
			continue // not a flag: parseServices reads it (services.go)
		}
		f := flagNamed(flags, e.key)
		if f == nil || e.key == configFlag {
			return nil, fmt.Errorf("config file %s: line %d: unknown key %q (keys are serve's long flag names and services: %s)", path, e.line, e.key, strings.Join(flagNames(flags), ", "))
		}
		v := normalize(f, e.value)
		if !fileValueOK(f, v) {
			return nil, fmt.Errorf("config file %s: line %d: invalid value %q for %s: %s", path, e.line, fmt.Sprint(v), e.key, valueHint(f, fmt.Sprint(v)))
		}
		values[e.key] = v
	}
	return altsrc.NewMapInputSource(path, values), nil
}

// configEntry is one top-level key of the config file, its line and its value.
type configEntry struct {
	key   string
	line  int
	value any
}

// configEntries reads a YAML map document key by key, so that every problem names its line
// in the file's own terms; none for an empty document (or one of comments only).
func configEntries(data []byte) ([]configEntry, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not a YAML map of flag names to values: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil, &lineError{m.Line, "not a YAML map of flag names to values, such as listen: \":8000\""}
	}
	first := map[string]int{}
	var out []configEntry
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, &lineError{k.Line, "a key must be a flag name, such as listen"}
		}
		if line, dup := first[k.Value]; dup {
			return nil, &lineError{k.Line, fmt.Sprintf("key %q given twice (first at line %d)", k.Value, line)}
		}
		first[k.Value] = k.Line
		var val any
		if err := v.Decode(&val); err != nil {
			return nil, &lineError{v.Line, fmt.Sprintf("%s: the value cannot be read", k.Value)}
		}
		out = append(out, configEntry{k.Value, k.Line, val})
	}
	return out, nil
}

// fileValueOK reports whether v, as YAML decoded it, suits flag f: the file source would
// otherwise refuse it in words of Go's types.
func fileValueOK(f cli.Flag, v any) bool {
	switch f.(type) {
	case *altsrc.DurationFlag:
		s, ok := v.(string)
		_, err := time.ParseDuration(s)
		return ok && err == nil
	case *altsrc.BoolFlag:
		_, ok := v.(bool)
		return ok
	case *altsrc.IntFlag, *altsrc.Int64Flag, *altsrc.UintFlag, *altsrc.Uint64Flag:
		_, ok := v.(int)
		return ok
	case *altsrc.Float64Flag:
		_, ok := v.(float64)
		return ok
	}
	return true
}

func normalize(f cli.Flag, v any) any {
	switch f.(type) {
	case *altsrc.StringSliceFlag:
		if _, isList := v.([]any); !isList && v != nil {
			return []any{fmt.Sprint(v)}
		}
	case *altsrc.StringFlag, *altsrc.PathFlag:
		switch v.(type) {
		case int, float64, bool:
			return fmt.Sprint(v)
		}
	case *altsrc.Float64Flag:
		if n, ok := v.(int); ok {
			return float64(n)
		}
	}
	return v
}

func flagNamed(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

func flagNames(flags []cli.Flag) []string {
	var names []string
	for _, f := range flags {
		if n := f.Names()[0]; n != configFlag {
			names = append(names, n)
		}
	}
	return names
}
