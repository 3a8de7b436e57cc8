// Package etcdreg keeps fulcrum's backend registry in etcd, so that several balancers route
// to the same live backends: a heartbeat at any of them registers a backend at all of them.
//
//	cfg, err := etcdreg.ParseURL("etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379/fulcrum")
//	if err != nil { ... }
//	cfg.TTL = 10 * time.Second             // at least etcdreg.MinTTL
//	cfg.Password = os.Getenv(etcdreg.PasswordEnv) // with cfg.User
//	st, err := etcdreg.Open(cfg)
//	if err != nil { ... }
//	defer st.Close()
//	pools := map[string]*pool.Pool{"web": web} // local pools with no TTL: expiry is etcd's
//	go st.Watch(ctx, &etcdreg.Mirror{Pools: pools})
//	api := &admin.API{Registry: st.Service("web", web), Shared: st} // writes go to etcd first
//
// or, below the pool.Registry seam:
//
//	created, err := st.Register(ctx, "web", "10.0.0.7:8080", netip.Addr{}, 0) // creates or renews
//	if errors.Is(err, etcdreg.ErrUnavailable) { ... } // answer 503: etcd cannot take it now
//	known, err := st.Heartbeat(ctx, "web", "10.0.0.7:8080", 0) // renews; never creates
//	err = st.Drain(ctx, "web", "10.0.0.7:8080")     // seen by every instance, until Undrain
//	err = st.Remove(ctx, "web", "10.0.0.7:8080")    // etcdreg.ErrNotFound if not registered
//
// # Layout
//
// One key per backend, Prefix/SERVICE/HOST:PORT, holding JSON
// {"weight":N,"draining":BOOL,"created":TIME}, and one lease per backend with the TTL. The
// lease is the backend's liveness: each heartbeat renews it, and etcd deletes the key when
// nobody has renewed it for a TTL. Drain, undrain and weight changes rewrite the value under
// the same lease; Remove revokes the lease.
//
// # Heartbeats
//
// A Store renews leases over one LeaseKeepAlive stream of its own, one request per heartbeat
// and nothing in between: a backend that stops heartbeating stops being renewed. As with
// pool.Registry, Register creates or renews and Heartbeat only renews (a backend etcd does
// not hold is left to the caller to register). Either reads a key the Store has not seen
// first (another instance may hold it); for Register, a key etcd does not hold, or whose
// lease answers with a TTL of 0, is created again with a new lease in a transaction that
// succeeds only if the key does not exist. When two instances race, the
// loser takes the winner's lease and revokes its own, so a backend has one lease however many
// instances it heartbeats to. While the Store's Watch runs, what the Store knows of the keys it
// heartbeats follows etcd: a key deleted by hand is created again at its next Register, and a
// weight changed at another instance is compared with the one the next heartbeat brings.
//
// # Watching
//
// Watch lists the prefix at revision R and watches from R+1, delivering to a Sink; it lists
// again after a compaction, a failed watch, or etcd's return after an outage. Expiry is
// etcd's alone: no local clock drops a backend that another instance keeps alive, and during
// an outage nothing is delivered, so the sink routes with the last set it had.
//
// # Outages
//
// Every call is bounded by Config.RequestTimeout and fails with an error wrapping
// ErrUnavailable when etcd cannot answer (no member reachable, no quorum). Healthy turns false
// at such a failure and true at the next success; a probe reads etcd every
// Config.ProbeInterval so that it turns even without traffic, and the loss and the recovery
// are logged once each. Leases outlive an outage: a restarted etcd renews every lease for a
// full TTL, so a backend that keeps heartbeating through the outage (its heartbeats failing)
// is renewed again once etcd is back and never leaves; one that stopped leaves a TTL after
// etcd's return.
//
// # Wiring
//
// Mirror is the Sink a balancer uses: it keeps each service's local pool equal to etcd and
// never touches static backends. Shared is a service's pool.Registry for the admin API: a
// change goes to etcd first and reaches the local pool only once etcd has taken it; a call
// etcd cannot answer fails with pool.ErrUnavailable (which ErrUnavailable is).
//
// The package does not pick backends, count connections, check health or validate a
// backend's address beyond what keeps the key layout intact: connection counts and health
// stay local to each balancer, and callers validate addresses and weights before writing.
package etcdreg
