package sniroute

import (
	"fmt"
	"strings"
)

// maxNameLen is the longest DNS name in text form, without its trailing dot.
const maxNameLen = 253

// Pattern is a checked server-name pattern in its canonical form: lowercase, no trailing dot.
// The zero Pattern matches nothing and is refused by Build.
type Pattern struct {
	name     string // an exact name, or a wildcard's suffix (example.com for *.example.com)
	wildcard bool
}

// ParsePattern checks s and returns its canonical form; the error says what is wrong.
func ParsePattern(s string) (Pattern, error) {
	name := strings.ToLower(strings.TrimSuffix(s, "."))
	p := Pattern{name: name}
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		p = Pattern{name: rest, wildcard: true}
	}
	if err := checkName(p.name); err != nil {
		return Pattern{}, fmt.Errorf("invalid server-name pattern %q: %w", s, err)
	}
	return p, nil
}

// String is the pattern as an operator writes it: api.example.com or *.example.com.
func (p Pattern) String() string {
	if p.wildcard {
		return "*." + p.name
	}
	return p.name
}

// Wildcard reports whether p is a wildcard of one leftmost label.
func (p Pattern) Wildcard() bool { return p.wildcard }

// checkName accepts a lowercase DNS name: labels of 1 to 63 letters, digits, hyphens or
// underscores, a hyphen at neither end of a label.
func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("a name is needed, such as api.example.com or *.example.com")
	case len(name) > maxNameLen:
		return fmt.Errorf("longer than %d characters", maxNameLen)
	}
	for label := range strings.SplitSeq(name, ".") {
		if err := checkLabel(label); err != nil {
			return err
		}
	}
	return nil
}

func checkLabel(label string) error {
	switch {
	case label == "":
		return fmt.Errorf("empty label (two dots in a row, or a leading dot)")
	case len(label) > 63:
		return fmt.Errorf("label %q is longer than 63 characters", label)
	case strings.Contains(label, "*"):
		return fmt.Errorf("a wildcard must be the whole leftmost label, as in *.example.com")
	case label[0] == '-' || label[len(label)-1] == '-':
		return fmt.Errorf("label %q starts or ends with a hyphen", label)
	}
	for _, c := range []byte(label) {
		if !isLDH(c) {
			return fmt.Errorf("label %q has %q: use letters, digits, hyphens and underscores", label, c)
		}
	}
	return nil
}

func isLDH(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}
