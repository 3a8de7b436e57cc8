package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// Usage errors: a mistake on the command line gets one line that names the flag or word and
// says what to write instead, never the whole usage text, and exit status 2.

// usageError is a command line that cannot be run as written; main exits 2 with its message.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// exitCode is the process's exit status for an error Run returned.
func exitCode(err error) int {
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// withUsageErrors sets OnUsageError on cmd and every command under it, and checks their
// required flags itself (the library answers a missing one with the whole usage text).
func withUsageErrors(cmds []*cli.Command) []*cli.Command {
	for _, c := range cmds {
		c.OnUsageError = onUsageError
		checkRequired(c)
		withUsageErrors(c.Subcommands)
	}
	return cmds
}

// checkRequired moves the check of c's required flags into its Before hook.
func checkRequired(c *cli.Command) {
	var required []string
	for _, f := range c.Flags {
		switch f := f.(type) {
		case *cli.StringFlag:
			if f.Required {
				f.Required, required = false, append(required, f.Name)
			}
		case *cli.IntFlag:
			if f.Required {
				f.Required, required = false, append(required, f.Name)
			}
		}
	}
	if len(required) == 0 {
		return
	}
	before := c.Before
	c.Before = func(cc *cli.Context) error {
		for _, name := range required {
			if !cc.IsSet(name) {
				return &usageError{fmt.Sprintf("--%s is required (%s --help lists the flags)", name, commandPath(cc))}
			}
		}
		if before != nil {
			return before(cc)
		}
		return nil
	}
}

// onlyFlags makes each of cmds refuse positional arguments.
func onlyFlags(cmds []*cli.Command) []*cli.Command {
	for _, c := range cmds {
		before := c.Before
		c.Before = func(cc *cli.Context) error {
			if err := noArguments(cc); err != nil {
				return err
			}
			if before != nil {
				return before(cc)
			}
			return nil
		}
	}
	return cmds
}

// The flag parser reports a bad value only as text, so the flag's name and the value are
// read back from it; the formats are those of Go's flag package and of the cli library's
// environment handling.
var (
	badValue   = regexp.MustCompile(`^invalid (?:boolean )?value "(.*)" for (?:flag )?-{1,2}([\w-]+): `)
	badEnv     = regexp.MustCompile(`^could not parse "(.*)" as [\w ]+ value from (?:env var|environment variable|file) "?([^" ]+)"? for flag ([\w-]+): `)
	needsValue = regexp.MustCompile(`^flag needs an argument: -{1,2}([\w-]+)$`)
	undefined  = regexp.MustCompile(`^flag provided but not defined: -{1,2}(.+)$`)
)

// onUsageError turns the flag parser's error into one line: the bad value and a hint for its
// type, a missing value, or an unknown flag with the nearest known one.
func onUsageError(c *cli.Context, err error, _ bool) error {
	flags := c.Command.Flags
	msg := err.Error()
	if m := badValue.FindStringSubmatch(msg); m != nil {
		return &usageError{badValueMessage(flagNamed(flags, m[2]), m[2], m[1], "--"+m[2])}
	}
	if m := badEnv.FindStringSubmatch(msg); m != nil {
		return &usageError{badValueMessage(flagNamed(flags, m[3]), m[3], m[1], m[2]+" (--"+m[3]+")")}
	}
	if m := needsValue.FindStringSubmatch(msg); m != nil {
		return &usageError{fmt.Sprintf("--%s needs a value: --%s VALUE or --%s=VALUE", m[1], m[1], m[1])}
	}
	if m := undefined.FindStringSubmatch(msg); m != nil {
		return &usageError{unknownFlagMessage(c, flags, m[1])}
	}
	return &usageError{strings.ReplaceAll(msg, " -", " --")}
}

// badValueMessage is `invalid value "10" for --ttl: a duration needs a unit, such as 10s`;
// where is how the value was given (the flag, or an environment variable).
func badValueMessage(f cli.Flag, name, value, where string) string {
	return fmt.Sprintf("invalid value %q for %s: %s", value, where, valueHint(f, value))
}

// valueHint says what a value of f's type looks like.
func valueHint(f cli.Flag, value string) string {
	switch f := f.(type) { // serve's flags are wrapped to be read from the config file too
	case *altsrc.DurationFlag:
		return valueHint(f.DurationFlag, value)
	case *altsrc.BoolFlag:
		return valueHint(f.BoolFlag, value)
	case *altsrc.IntFlag:
		return valueHint(f.IntFlag, value)
	case *altsrc.Float64Flag:
		return valueHint(f.Float64Flag, value)
	}
	switch f.(type) {
	case *cli.DurationFlag:
		return durationHint(value)
	case *cli.BoolFlag:
		return "want true or false"
	case *cli.IntFlag, *cli.Int64Flag, *cli.IntSliceFlag, *cli.Int64SliceFlag:
		return "want a whole number, such as 10"
	case *cli.UintFlag, *cli.Uint64Flag:
		return "want a whole number of 0 or more, such as 10"
	case *cli.Float64Flag, *cli.Float64SliceFlag:
		return "want a number, such as 1.5"
	}
	return "not a valid value"
}

// durationHint explains why value is not a duration.
func durationHint(value string) string {
	if _, err := time.ParseDuration(value + "s"); err == nil {
		return "a duration needs a unit, such as " + strings.TrimSpace(value) + "s"
	}
	return "want a duration such as 10s, 500ms or 1m30s"
}

// unknownFlagMessage names an unknown flag and, when one is close, the flag that was meant.
func unknownFlagMessage(c *cli.Context, flags []cli.Flag, name string) string {
	msg := fmt.Sprintf("unknown flag --%s", name)
	var names []string
	for _, f := range flags {
		names = append(names, f.Names()...)
	}
	if s := nearest(name, names); s != "" {
		msg += fmt.Sprintf(": did you mean --%s?", s)
	} else if c.Command.Name == c.App.Name {
		msg += ": a command's flags go after its name, such as fulcrum serve --" + name
	}
	return msg + fmt.Sprintf(" (%s --help lists the flags)", commandPath(c))
}

// commandPath is "fulcrum serve" for serve's context.
func commandPath(c *cli.Context) string {
	var parts []string
	for _, cc := range c.Lineage() {
		if cc.Command != nil && cc.Command.Name != "" && cc.Command.Name != c.App.Name {
			parts = append([]string{cc.Command.Name}, parts...)
		}
	}
	return strings.Join(append([]string{"fulcrum"}, parts...), " ")
}

// unknownCommand is the application's action: with no arguments it prints the help, with one
// it refuses it as a command that does not exist.
func unknownCommand(c *cli.Context) error {
	if !c.Args().Present() {
		return cli.ShowAppHelp(c)
	}
	word := c.Args().First()
	var names []string
	for _, cmd := range c.App.Commands {
		if !cmd.Hidden {
			names = append(names, cmd.Names()...)
		}
	}
	msg := fmt.Sprintf("unknown command %q", word)
	if s := nearest(word, names); s != "" {
		msg += fmt.Sprintf(": did you mean %q?", s)
	}
	return &usageError{msg + " (fulcrum --help lists the commands)"}
}

// nearest is the name closest to word by edit distance, if it is close enough to be a typo:
// at most a third of the word's letters wrong (at least one).
func nearest(word string, names []string) string {
	best, bestD := "", max(1, len(word)/3)+1
	for _, n := range names {
		if d := editDistance(word, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b (bytes: names are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// noArguments refuses positional arguments: a stray word would otherwise end flag parsing
// there and every flag after it would be ignored. A word that names a file was most likely
// meant as the config file.
func noArguments(c *cli.Context) error {
	if !c.Args().Present() {
		return nil
	}
	word := c.Args().First()
	msg := fmt.Sprintf("unexpected argument %q", word)
	if fi, err := os.Stat(word); err == nil && !fi.IsDir() && c.Command.Name == "serve" {
		msg += fmt.Sprintf(": to read a config file, use --config %s", word)
	} else {
		msg += fmt.Sprintf(": %s takes only flags (%s --help lists them)", commandPath(c), commandPath(c))
	}
	return errors.New(msg)
}
