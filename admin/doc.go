// Package admin is fulcrum's HTTP control plane, served on its own listener apart from the
// balanced port. Its paths and JSON fields are those of the OpenResty design fulcrum grew from:
//
//	GET|POST /upstream/add?host=&port=[&weight=]  register, or heartbeat a known backend
//	GET|POST /upstream/remove?host=&port=[&force=1] stop new connections; forget when idle;
//	                                              force=1 also resets established ones
//	GET|POST /upstream/drain?host=&port=          no new connections until undrain (sticky)
//	GET|POST /upstream/undrain?host=&port=        take new connections again
//	GET      /upstream/status[?service=]          every known backend, sorted by service and key
//	GET      /healthz                             liveness
//	GET      /metrics                             Prometheus text format (API.Metrics; metrics.go)
//	GET      /                                    status page, embedded (status_page.go, ui/)
//
// In /upstream/status, total_conns counts every connection the pool gave a backend, those
// whose dial then failed included (fulcrum_backend_connections_routed_total counts only the
// dialed ones); static says whether the backend was configured (--backend, config file) rather
// than registered by heartbeat; last_error is its last failed dial or health check. With a
// shared registry (etcd) a backend lives by its lease, renewed through any balancer, so
// last_heartbeat is only the last heartbeat or key change this balancer saw, and the status
// page and `fulcrum status` show no heartbeat age there (nor for static backends).
//
// A balancer may run several services (API.Services), each over its own registry: a mutating
// request's service parameter names one (absent or empty: "default"; malformed: 400; not
// configured: 404), and a backend is identified by (service, host, port). Without Services
// the API is one service, "default", over API.Registry.
//
// An empty host means the caller's own address: its TCP peer, or, only when that peer is a
// trusted proxy (API.TrustedProxies), the right-most untrusted address of X-Forwarded-For.
//
// Security (API.Security) is applied in two places. One middleware around every route asks
// for the bearer token where the route needs it (mutating routes when a token is set, read
// routes too with TokenRead, /healthz never). Then every mutating handler reads parse →
// authorize → act: parseRequest (params.go) returns a complete request, its service chosen, or
// a 400 (a 404 for a service not configured); authorize
// (access.go) applies the address-only rule and, for an address literal, the backend address
// rules (403), then the per-client rate limit (429); the registry acts. A heartbeat of a
// registered backend is one locked call (Registry.Heartbeat). Any other registration, including
// one whose backend was removed or forgotten meanwhile, goes through the backend address rules
// first (a name is resolved there, once, and dialed by its first address); if they refuse it
// the rate-limit token is given back. Without a token, a remote caller may name only its own
// address; a loopback caller may name any. These rules, and the one rate-limit bucket per
// client, are the same whatever the service.
//
//	api := &admin.API{Registry: p}
//	srv := admin.NewServer("127.0.0.1:9090", api.Handler())
//	go srv.ListenAndServe()
//
// or, for several services:
//
//	api := &admin.API{Services: []admin.Service{
//		{Name: "default", Listen: []string{":5432"}, Registry: dbPool, CloseBackend: dbServer.CloseBackend},
//		{Name: "web", Listen: []string{":80"}, Registry: webPool, CloseBackend: webServer.CloseBackend},
//	}}
//
// The package validates and translates; membership, picking and counting live in pool.
package admin
