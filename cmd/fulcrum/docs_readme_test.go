package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readmeSetup is the README's quick start: exactly two setup commands, the second being what
// CI runs (.ci/run), so it must stay as it is.
const readmeSetup = "```sh\n" +
	"go run ./cmd/fulcrum serve          # balances :8000, admin API on 127.0.0.1:9090\n" +
	"go test -race -count=1 ./...        # the whole test suite (what CI runs)\n" +
	"```\n"

// TestReadmeFrontPage: the README stays a front page (at most 200 lines) and keeps the quick
// start's two commands byte for byte.
func TestReadmeFrontPage(t *testing.T) {
	b, err := os.ReadFile(repoFile("README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	if n := strings.Count(readme, "\n"); n > 200 {
		t.Errorf("README.md has %d lines; it is a front page of at most 200 (move reference text to docs/)", n)
	}
	if !strings.Contains(readme, "## Quick start\n\n"+readmeSetup) {
		t.Errorf("README.md's quick start no longer opens with its two setup commands:\n%s", readmeSetup)
	}
}

// docLink is a Markdown link's target.
var docLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestDocsLinks: every relative link in the README and docs/ names a file that exists and,
// when it has one, an anchor that is one of that file's headings.
func TestDocsLinks(t *testing.T) {
	pages, err := filepath.Glob(repoFile("docs/*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, repoFile("README.md"))
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range docLink.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checkDocLink(t, page, target)
		}
	}
}

func checkDocLink(t *testing.T, page, target string) {
	t.Helper()
	file, anchor, _ := strings.Cut(target, "#")
	path := page
	if file != "" {
		path = filepath.Join(filepath.Dir(page), filepath.FromSlash(file))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%s links to %s: %v", page, target, err)
		return
	}
	if anchor != "" && !headingAnchors(string(b))[anchor] {
		t.Errorf("%s links to %s: no heading with anchor #%s in %s", page, target, anchor, path)
	}
}

// headingAnchors are the anchors GitHub gives a Markdown file's headings: lower case, spaces as
// dashes, punctuation other than - and _ dropped.
func headingAnchors(doc string) map[string]bool {
	anchors := map[string]bool{}
	inCode := false
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
				b.WriteRune(r)
			}
		}
		anchors[b.String()] = true
	}
	return anchors
}
