// Package admin is fulcrum's HTTP control plane, served on its own listener apart from the
// balanced port. Its paths and JSON fields are those of the OpenResty design fulcrum grew from:
//
//	GET|POST /upstream/add?host=&port=[&weight=]  register, or heartbeat a known backend
//	GET|POST /upstream/remove?host=&port=[&force=1] stop new connections; forget when idle;
//	                                              force=1 also resets established ones
//	GET|POST /upstream/drain?host=&port=          no new connections until undrain (sticky)
//	GET|POST /upstream/undrain?host=&port=        take new connections again
//	GET      /upstream/status                     every known backend, sorted by key
//	GET      /healthz                             liveness
//
// An empty host means the caller's own address: its TCP peer, or, only when that peer is a
// trusted proxy (API.TrustedProxies), the right-most untrusted address of X-Forwarded-For.
//
//	api := &admin.API{Registry: p}
//	srv := admin.NewServer("127.0.0.1:9090", api.Handler())
//	go srv.ListenAndServe()
//
// The package validates and translates; membership, picking and counting live in pool.
package admin
