// Package listener is fulcrum's data plane: it accepts client TCP connections, asks a
// pool.Picker for a backend, dials it and joins the two sockets until both directions end.
//
//	s := &listener.Server{Picker: p, ConnectTimeout: 5 * time.Second, Retries: 2}
//	ln, _ := net.Listen("tcp", ":8000")
//	go s.Serve(ln)
//	...
//	s.Shutdown(ctx) // stop accepting, wait for connections, force-close them when ctx ends
//
// Moving the bytes is the job of a DataPath. The default, Splice, copies each direction with
// (*net.TCPConn).ReadFrom, which Linux turns into splice(2): the bytes never enter user space.
// Nothing on this path may wrap a *net.TCPConn in another type, or splice silently stops.
//
// The layout:
//
//	Server (server.go)          settings, Stats, and one plane, chosen in Server.newPlane
//	 ├─ connBook (connbook.go)  every transition of a connection, told once: counts, log gates,
//	 │                          Picker calls, the cap, Observer events (directly or via the loops)
//	 ├─ SNIRouter (sni.go)      one address shared by several Servers: reads the TLS hello on a
//	 │                          goroutine, then hands the connection to the chosen Server's plane
//	 ├─ clientbounds.go         per-client bounds (clientlimit), asked before any pick
//	 ├─ goPlane (goplane*.go)   PlaneGoroutine: an accept loop, a goroutine per connection
//	 │                          (conn.serve), bytes moved by the DataPath (Splice)
//	 └─ loopServer (eloop_*)    PlaneEpoll: the Server on EventLoops, shared per balancer
//	     ├─ loop                accept, PROXY header, connect, timers: a state machine per connection
//	     ├─ relay               the byte mover of established pairs: spliceRelay, or on
//	     │                      PlaneSockmap sockmapRelay, which moves long-lived pairs into
//	     │                      a BPF sockmap (sockmap_kernel_linux.go) for the kernel to relay
//	     └─ internal/poll       mechanism only: epoll set with generation tags, eventfd task
//	                            queue, splice pipe pool, raw socket addresses
//
// On PlaneGoroutine (the zero value) each accepted connection is owned by one goroutine
// running conn.serve (goplane_conn.go): the inbound PROXY header when one is expected, connect
// (pick, dial, retries), proxy, release, untrack. On PlaneEpoll (Linux) a few event loops
// (EventLoops, which the Servers of one balancer share through Server.Loops), each on a locked
// OS thread with its own epoll instance, own every connection from accept to close over raw
// non-blocking sockets: the same steps as a state machine per connection. Both tell the
// Server's connBook of every transition, so both behave the same to clients, backends, the
// Picker, the Observer, the counters and the log.
//
// On the event loops, the connect step books the dial and hands the established pair to a
// relay (eloop_relay_linux.go), the byte-mover seam: it starts with a prefix to send first,
// takes every event of both sockets, says whether bytes moved out of the loop's sight (for
// the idle timeout) and, stopped, returns the byte counts. The first relay is the buffer and
// splice code (eloop_relay_splice_linux.go). A new byte mover (an in-kernel BPF sockmap, say)
// is one new file, eloop_relay_<name>_linux.go, with a type that implements relay; one
// byteMover constant, with its entry in relays; and its value for the flag that chooses it.
// The lifecycle, the connect step and the loop do not change.
//
// Limits: MaxConns pauses accepting at the cap (clients wait in the kernel backlog);
// QueueTimeout lets a client wait for a backend slot (Picker.AcquireWait); IdleTimeout
// closes connections on which no byte moves either way. Every dial's outcome goes to
// Picker.ReportDial (passive health), and CloseBackend resets the connections of one backend.
//
// The package does not choose backends (pool does) and does not speak HTTP (admin does).
package listener
