// Package pool is fulcrum's backend registry: it remembers which backends exist, picks one for
// each new connection and counts the connections each one carries, exactly.
//
// A listener asks for a backend and gives it back when the proxied connection has ended:
//
//	p := &pool.Pool{TTL: time.Minute}
//	p.Register(pool.Address{Host: "10.0.0.7", Port: 8080}, 1)
//	b, err := p.Acquire(clientIP, nil) // picks and counts in one step
//	if err != nil { ... }              // pool.ErrNoBackend: nothing live
//	defer p.Release(b)                 // exactly once, whatever happened
//
// Picking and counting happen under one lock, so a burst of concurrent connections spreads
// exactly. Live backends sit in an indexed heap ordered by active/weight, which keeps a pick
// and a release at O(log n) however large the pool grows.
//
// A backend that misses its heartbeat for TTL is never picked again (checked at pick time) and
// is forgotten by Sweep once its last connection has ended; until then it stays listed, so a
// heartbeat that revives it finds its live count. Removal works the same way. The package does
// not dial, proxy or speak HTTP: the listener and admin packages do, through Picker and Registry.
package pool
