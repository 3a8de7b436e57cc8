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
// Each accepted connection is owned by one goroutine running conn.serve (conn.go): the inbound
// PROXY header when one is expected, connect (pick, dial, retries), proxy, release, untrack.
//
// Limits: MaxConns pauses accepting at the cap (clients wait in the kernel backlog);
// QueueTimeout lets a client wait for a backend slot (Picker.AcquireWait); Splice.IdleTimeout
// closes connections on which no byte moves either way. Every dial's outcome goes to
// Picker.ReportDial (passive health), and CloseBackend resets the connections of one backend.
//
// The package does not choose backends (pool does) and does not speak HTTP (admin does).
package listener
