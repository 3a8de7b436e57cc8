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
// and a release at O(log n) however large the pool grows. P2C and Maglev pick without it and
// switch its order off: for them the live backends are a plain slice and a pick is O(1).
// Maglev reads a lookup table that a builder goroutine rebuilds, off the pick path, when
// membership or weights change (maglev.go, maglev_ring.go); WaitTable waits for it.
// RoundRobin (smooth weighted round robin, as nginx) keeps the live backends in one ring per
// weight as they enter and leave the heap, and a pick steps over the weights, not the
// backends (roundrobin.go).
//
// A backend that misses its heartbeat for TTL is never picked again (checked at pick time) and
// is forgotten by Sweep once its last connection has ended; until then it stays listed, so a
// heartbeat that revives it finds its live count. Removal works the same way.
//
// Only backends that may take a connection sit in the heap. A failed dial (ReportDial) takes a
// backend out for a backoff of 1 s doubling to 30 s; a small heap of backoff ends lets Acquire
// offer it to one trial connection when its backoff is over, without scanning the pool.
// Active checks (Maintain runs them and counts them against HealthFall and
// HealthRise) take it out after a number of failures
// and bring it back after a number of passes. Drain takes it out until Undrain, whatever the
// heartbeats say. MaxConnsPerBackend takes a full backend out until a connection ends, and
// AcquireWait queues callers while all are full. With SlowStart, a backend that joins or comes
// back ramps its effective weight from 10% to 100%, kept in thousandths so comparisons stay
// exact integers. Status reports each backend's State and last error. The package does
// not dial, proxy or speak HTTP: the listener and admin packages do, through Picker and Registry.
package pool
