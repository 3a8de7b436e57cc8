package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"
)

// The flag reference in docs/flags.md is written from the command line's own definitions, so
// that it cannot drift from what --help shows. TestFlagsDoc (docs_flags_test.go) fails when the
// file is stale and rewrites it when run with -update-docs:
//
//	go test ./cmd/fulcrum -run TestFlagsDoc -update-docs

// flagsDocPath is the generated file, relative to the repository root.
const flagsDocPath = "docs/flags.md"

// flagsDocCommand is the one command that regenerates flagsDocPath.
const flagsDocCommand = "go test ./cmd/fulcrum -run TestFlagsDoc -update-docs"

// writeFlagsDoc writes the Markdown flag reference of app: one table per visible command
// (subcommands after their parent), then the global options. app must have been set up
// (app.Setup), so that its help and version flags exist.
func writeFlagsDoc(w io.Writer, app *cli.App) error {
	var b strings.Builder
	b.WriteString("# Command-line flags\n\n")
	fmt.Fprintf(&b, "<!-- Generated from the flag definitions in cmd/fulcrum by `%s`. Do not edit by hand. -->\n\n", flagsDocCommand)
	b.WriteString("Every flag of every command, as `fulcrum COMMAND --help` prints it. Every `fulcrum serve` flag\n" +
		"can also be set by its environment variable, or by a key of the same name (without the `--`)\n" +
		"in the `--config` file ([operations](operations.md#config-file)): the command line wins over\n" +
		"the environment, which wins over the file. Durations need a unit (`500ms`, `30s`, `1h`).\n")
	for _, cmd := range app.VisibleCommands() {
		writeCommandFlags(&b, "fulcrum "+cmd.Name, cmd)
	}
	fmt.Fprintf(&b, "\n## fulcrum (global options)\n\n")
	writeFlagTable(&b, app.VisibleFlags(), true)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeCommandFlags writes the section of one command, then those of its visible subcommands.
func writeCommandFlags(b *strings.Builder, path string, cmd *cli.Command) {
	if cmd.Name == "help" {
		return
	}
	fmt.Fprintf(b, "\n## %s\n\n%s\n\n", path, docEscape(cmd.Usage))
	writeFlagTable(b, cmd.VisibleFlags(), false)
	for _, sub := range cmd.VisibleCommands() {
		writeCommandFlags(b, path+" "+sub.Name, sub)
	}
}

// writeFlagTable writes one row per flag; help flags only where withHelp asks (the global
// table), since every command has one.
func writeFlagTable(b *strings.Builder, flags []cli.Flag, withHelp bool) {
	b.WriteString("| flag | default | environment | meaning |\n| --- | --- | --- | --- |\n")
	for _, f := range flags {
		df, ok := f.(cli.DocGenerationFlag)
		if !ok || (!withHelp && f.Names()[0] == cli.HelpFlag.Names()[0]) {
			continue
		}
		placeholder, usage := splitPlaceholder(df.GetUsage())
		if rf, ok := f.(cli.RequiredFlag); ok && rf.IsRequired() {
			usage = "**required**: " + usage
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", flagSpelling(df, placeholder), docCode(flagDefault(df)),
			docCode(strings.Join(df.GetEnvVars(), ", ")), docEscape(usage))
	}
}

// flagSpelling is how the flag is written: its names and, if it takes a value, a placeholder.
func flagSpelling(df cli.DocGenerationFlag, placeholder string) string {
	var names []string
	for _, n := range df.Names() {
		if len(n) == 1 {
			names = append(names, "-"+n)
		} else {
			names = append(names, "--"+n)
		}
	}
	s := strings.Join(names, ", ")
	if df.TakesValue() {
		if placeholder == "" {
			placeholder = "value"
		}
		s += " " + placeholder
	}
	return s
}

// flagDefault is the default that --help shows, "" when it shows none.
func flagDefault(df cli.DocGenerationFlag) string {
	if bf, ok := df.(*cli.BoolFlag); ok && bf.DisableDefaultText {
		return ""
	}
	return df.GetDefaultText()
}

// splitPlaceholder takes the back-quoted placeholder out of a usage text, as --help does, and
// returns the usage with that word marked as code.
func splitPlaceholder(usage string) (placeholder, text string) {
	start := strings.IndexByte(usage, '`')
	if start < 0 {
		return "", usage
	}
	end := strings.IndexByte(usage[start+1:], '`')
	if end < 0 {
		return "", usage
	}
	return usage[start+1 : start+1+end], usage
}

// docCode renders s as inline code, or a dash when it is empty.
func docCode(s string) string {
	if s == "" {
		return "—"
	}
	return "`" + strings.ReplaceAll(s, "|", `\|`) + "`"
}

// docEscape keeps a table cell one cell.
func docEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ")
}
