package sniroute

import (
	"errors"
	"fmt"
)

// Match says how Lookup chose.
type Match uint8

const (
	NoRoute  Match = iota // no pattern matched and the address has no default
	Exact                 // a DNS-name pattern matched
	Wildcard              // a *.suffix pattern matched
	Default               // no pattern matched (or no name was sent): the default service
)

func (m Match) String() string {
	switch m {
	case Exact:
		return "exact"
	case Wildcard:
		return "wildcard"
	case Default:
		return "default"
	}
	return "no_route"
}

// Service is one service on a shared address: its name (for errors), patterns (none: it is
// the default) and the value Lookup returns for it.
type Service[S any] struct {
	Name     string
	Patterns []Pattern
	Value    S
}

// Table routes the server names of one listen address. It is read-only once built and safe
// for concurrent use; its zero value routes nothing.
type Table[S any] struct {
	exact      map[string]S
	wildcard   map[string]S // keyed by the suffix: example.com for *.example.com
	def        S
	hasDefault bool
}

// Build makes the table of the address listen from its services, or says what is wrong:
// a pattern claimed twice, or more than one service without patterns.
func Build[S any](listen string, services []Service[S]) (*Table[S], error) {
	t := &Table[S]{exact: make(map[string]S), wildcard: make(map[string]S)}
	owners := make(map[Pattern]string) // pattern → the service claiming it, for errors
	defaultName := ""
	for _, s := range services {
		if len(s.Patterns) == 0 {
			if t.hasDefault {
				return nil, fmt.Errorf("listen %s: services %q and %q both have no --sni pattern; at most one service per address may be the default", listen, defaultName, s.Name)
			}
			t.def, t.hasDefault, defaultName = s.Value, true, s.Name
			continue
		}
		if err := t.add(listen, s, owners); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (t *Table[S]) add(listen string, s Service[S], owners map[Pattern]string) error {
	for _, p := range s.Patterns {
		if p.name == "" {
			return fmt.Errorf("listen %s: service %q: %w", listen, s.Name, errEmptyPattern)
		}
		if owner, taken := owners[p]; taken {
			if owner == s.Name {
				return fmt.Errorf("listen %s: service %q names server name %q twice", listen, s.Name, p)
			}
			return fmt.Errorf("listen %s: services %q and %q both claim server name %q; a name may route to one service only", listen, owner, s.Name, p)
		}
		owners[p] = s.Name
		if p.wildcard {
			t.wildcard[p.name] = s.Value
		} else {
			t.exact[p.name] = s.Value
		}
	}
	return nil
}

var errEmptyPattern = errors.New("an empty server-name pattern")

// Lookup routes name, as the client sent it (any case, a trailing dot or none, empty when it
// sent none): an exact pattern first, then a wildcard, then the default.
func (t *Table[S]) Lookup(name []byte) (S, Match) {
	var lower [maxNameLen + 1]byte
	key, ok := canonical(name, &lower)
	if ok && len(key) > 0 {
		if v, hit := t.exact[string(key)]; hit {
			return v, Exact
		}
		if v, hit := t.wildcard[string(parent(key))]; hit {
			return v, Wildcard
		}
	}
	if t.hasDefault {
		return t.def, Default
	}
	var zero S
	return zero, NoRoute
}

// Default is the address's default service, if it has one.
func (t *Table[S]) Default() (S, bool) { return t.def, t.hasDefault }

// canonical is name without a trailing dot, lowercased into buf only when it has an upper
// case letter. It is false for a name longer than any DNS name (which no pattern matches).
func canonical(name []byte, buf *[maxNameLen + 1]byte) ([]byte, bool) {
	if n := len(name); n > 0 && name[n-1] == '.' {
		name = name[:n-1]
	}
	if len(name) > maxNameLen {
		return nil, false
	}
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			return lowerInto(name, i, buf), true
		}
	}
	return name, true
}

func lowerInto(name []byte, from int, buf *[maxNameLen + 1]byte) []byte {
	out := buf[:len(name)]
	copy(out, name[:from])
	for i := from; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// parent is name without its first label ("" when the label is empty or the only one): the
// key of the one wildcard that may match it.
func parent(name []byte) []byte {
	for i, c := range name {
		if c == '.' {
			if i == 0 {
				return nil
			}
			return name[i+1:]
		}
	}
	return nil
}
