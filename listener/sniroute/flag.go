package sniroute

import (
	"fmt"
	"strings"
)

// Assignment is one --sni value: a service and one of its patterns.
type Assignment struct {
	Service string
	Pattern Pattern
}

// ParseFlag reads a --sni value, NAME=PATTERN. Its errors name the flag and the value.
func ParseFlag(v string) (Assignment, error) {
	name, pattern, ok := strings.Cut(v, "=")
	name, pattern = strings.TrimSpace(name), strings.TrimSpace(pattern)
	switch {
	case !ok:
		return Assignment{}, fmt.Errorf("invalid value %q for --sni: want NAME=PATTERN, such as api=api.example.com", v)
	case name == "":
		return Assignment{}, fmt.Errorf("invalid value %q for --sni: the service name before '=' is empty", v)
	case pattern == "":
		return Assignment{}, fmt.Errorf("invalid value %q for --sni: the pattern after '=' is empty", v)
	}
	p, err := ParsePattern(pattern)
	if err != nil {
		return Assignment{}, fmt.Errorf("invalid value %q for --sni: %w", v, err)
	}
	return Assignment{Service: name, Pattern: p}, nil
}
