package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite "+flagsDocPath+" from the flag definitions")

// repoFile is a path relative to the repository root (tests run in cmd/fulcrum).
func repoFile(rel string) string { return filepath.Join("..", "..", filepath.FromSlash(rel)) }

// TestFlagsDoc: docs/flags.md is exactly what the generator writes from the command line's
// definitions (run with -update-docs to rewrite it).
func TestFlagsDoc(t *testing.T) {
	app := newApp(testUpgrades)
	app.Setup()
	var want bytes.Buffer
	if err := writeFlagsDoc(&want, app); err != nil {
		t.Fatal(err)
	}
	path := repoFile(flagsDocPath)
	if *updateDocs {
		if err := os.WriteFile(path, want.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (create it with: %s)", err, flagsDocCommand)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("%s is stale: the flag definitions changed; rewrite it with:\n\t%s", flagsDocPath, flagsDocCommand)
	}
}

// helpFlagLine is one flag line of --help: its names, then (two spaces or more later) its usage.
var helpFlagLine = regexp.MustCompile(`^\s+(-{1,2}[a-z0-9][a-z0-9-]*)`)

// helpFlag is what --help says of one flag: its first name, its default and its environment.
type helpFlag struct{ name, def, env string }

var (
	helpDefault = regexp.MustCompile(`\(default: (.*?)\)(?: \[\$[^\]]*\])?$`)
	helpEnv     = regexp.MustCompile(`\[\$([^\]]*)\]$`)
)

// parseHelpFlags reads the flag lines of a command's --help output (help flags apart).
func parseHelpFlags(out string) map[string]helpFlag {
	flags := map[string]helpFlag{}
	for _, line := range strings.Split(out, "\n") {
		m := helpFlagLine.FindStringSubmatch(line)
		if m == nil || m[1] == "--help" {
			continue
		}
		hf := helpFlag{name: m[1]}
		if d := helpDefault.FindStringSubmatch(line); d != nil {
			hf.def = d[1]
		}
		if e := helpEnv.FindStringSubmatch(line); e != nil {
			hf.env = strings.ReplaceAll(e[1], "$", "")
		}
		flags[hf.name] = hf
	}
	return flags
}

// docSections splits docs/flags.md into its command sections: "fulcrum serve" → table rows.
func docSections(doc string) map[string][]string {
	sections := map[string][]string{}
	var cur string
	for _, line := range strings.Split(doc, "\n") {
		if name, ok := strings.CutPrefix(line, "## "); ok {
			cur = name
			sections[cur] = nil
			continue
		}
		if cur != "" && strings.HasPrefix(line, "| `-") {
			sections[cur] = append(sections[cur], line)
		}
	}
	return sections
}

// docRowFlag is the first flag name of a table row.
func docRowFlag(row string) string {
	name, _, _ := strings.Cut(strings.TrimPrefix(row, "| `"), "`")
	name, _, _ = strings.Cut(name, " ")
	return strings.TrimSuffix(name, ",")
}

// TestFlagsDocMatchesHelp runs the real binary's --help for every command the doc lists and
// checks both ways: every flag help shows has a row in the doc with help's default and
// environment variable, and every row of the doc is a flag help shows.
func TestFlagsDocMatchesHelp(t *testing.T) {
	needBinary(t)
	doc, err := os.ReadFile(repoFile(flagsDocPath))
	if err != nil {
		t.Fatalf("%v (create it with: %s)", err, flagsDocCommand)
	}
	sections := docSections(string(doc))
	if _, ok := sections["fulcrum serve"]; !ok {
		t.Fatalf("%s has no section for fulcrum serve", flagsDocPath)
	}
	for section, rows := range sections {
		args, ok := strings.CutPrefix(section, "fulcrum ")
		if !ok {
			continue
		}
		if args == "(global options)" {
			args = ""
		}
		t.Run(section, func(t *testing.T) {
			out, err := exec.Command(fulcrumBin, append(strings.Fields(args), "--help")...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s --help: %v\n%s", section, err, out)
			}
			compareHelpAndDoc(t, parseHelpFlags(string(out)), rows)
		})
	}
}

func compareHelpAndDoc(t *testing.T, help map[string]helpFlag, rows []string) {
	t.Helper()
	if len(help) == 0 {
		t.Fatal("read no flags from --help: has its format changed?")
	}
	byName := map[string]string{}
	for _, row := range rows {
		name := docRowFlag(row)
		byName[name] = row
		if _, ok := help[name]; !ok && name != "--help" {
			t.Errorf("%s documents %s, which --help does not show", flagsDocPath, name)
		}
	}
	for name, hf := range help {
		row, ok := byName[name]
		switch {
		case !ok:
			t.Errorf("--help shows %s, which %s does not document (run: %s)", name, flagsDocPath, flagsDocCommand)
		case hf.def != "" && !strings.Contains(row, hf.def):
			t.Errorf("%s: --help says default %s; %s says: %s", name, hf.def, flagsDocPath, row)
		case hf.env != "" && !strings.Contains(row, hf.env):
			t.Errorf("%s: --help names %s; %s says: %s", name, hf.env, flagsDocPath, row)
		}
	}
}
