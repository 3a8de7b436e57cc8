// Package sniroute chooses, for one listen address shared by several services, the service
// whose server-name pattern matches the name a TLS client asked for (its SNI).
//
// A pattern is a DNS name (api.example.com) or a wildcard of one leftmost label
// (*.example.com: it matches a.example.com, not example.com nor a.b.example.com). Names
// compare case-insensitively, a trailing dot ignored. At most one service of an address has
// no pattern: it is the address's default.
//
// The table is built once, at start (and at upgrade), from every service on one address; a
// bad pattern, a pattern two services claim, or two defaults are errors that stop the start:
//
//	t, err := sniroute.Build(":443", []sniroute.Service[*svc]{
//		{Name: "api", Patterns: apiPatterns, Value: api},
//		{Name: "web", Value: web}, // no pattern: the default
//	})
//
// A data plane reads the hello (listener/internal/tlshello), then looks the name up:
//
//	v, how := t.Lookup(r.ServerName())
//	switch how {
//	case sniroute.Exact, sniroute.Wildcard: // fulcrum_sni_routed_total{service=...}
//	case sniroute.Default:                  // fulcrum_sni_default_total{listen=...}
//	case sniroute.NoRoute:                  // reset; refused reason="no_default"
//	}
//
// A lookup is at most two map lookups (the name, then the name without its first label in
// the wildcards), never a scan, and allocates nothing. ParseFlag reads a --sni NAME=PATTERN
// value. The package knows nothing of sockets or TLS.
package sniroute
