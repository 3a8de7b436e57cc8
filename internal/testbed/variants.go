package testbed

import (
	"strings"
	"sync"
	"testing"
)

// Variants runs a test once per variant (a data plane, say) as subtests named for each, and
// remembers which variant each subtest runs: helpers deep inside the test ask Of instead of
// taking the variant apart from the test's name. The zero value is ready to use; one
// package-level Variants serves a whole test binary.
type Variants[V ~string] struct {
	mu sync.Mutex
	of map[string]V // the full name of each running Each subtest → its variant
}

// Each runs test once for each of values, as the subtest named for it, with the variant known
// to Of for that subtest and every subtest below it.
func (vs *Variants[V]) Each(t *testing.T, values []V, test func(t *testing.T)) {
	for _, v := range values {
		t.Run(string(v), func(t *testing.T) {
			vs.set(t.Name(), v)
			t.Cleanup(func() { vs.clear(t.Name()) })
			test(t)
		})
	}
}

// Of is the variant of the Each subtest t is, or runs under; ok is false outside one.
func (vs *Variants[V]) Of(t testing.TB) (v V, ok bool) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	for name := t.Name(); ; {
		if v, ok := vs.of[name]; ok {
			return v, true
		}
		i := strings.LastIndexByte(name, '/')
		if i < 0 {
			return v, false
		}
		name = name[:i]
	}
}

func (vs *Variants[V]) set(name string, v V) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	if vs.of == nil {
		vs.of = make(map[string]V)
	}
	vs.of[name] = v
}

func (vs *Variants[V]) clear(name string) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	delete(vs.of, name)
}
