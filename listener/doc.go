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
// Server.DataPlane chooses how connections run. On PlaneGoroutine (the zero value) each
// accepted connection is owned by one goroutine running conn.serve (conn.go): the inbound
// PROXY header when one is expected, connect (pick, dial, retries), proxy, release, untrack.
// On PlaneEpoll (Linux) a few event loops (EventLoops, which the Servers of one balancer share
// through Server.Loops), each on a locked OS thread with its own epoll instance, own every
// connection from accept to close over raw non-blocking sockets: the same
// steps as a state machine per connection, the bytes moved through a 16 KiB per-loop buffer or,
// for bulk, spliced through pooled pipes (eloop_*_linux.go). Both behave the same to clients,
// backends, the Picker and the Observer.
//
// On the event loops, the connect step books the dial and hands the established pair to a
// relay (eloop_relay_linux.go), the byte-mover seam: it starts with a prefix to send first,
// takes every event of both sockets, says whether bytes moved out of the loop's sight (for
// the idle timeout) and, stopped, returns the byte counts. The first relay is the buffer and
// splice code (eloop_relay_splice_linux.go). A new byte mover is one new file with a type
// that implements relay, one byteMover constant (with its case in newRelay), and its value for
// the flag that chooses it; nothing else changes.
//
// Limits: MaxConns pauses accepting at the cap (clients wait in the kernel backlog);
// QueueTimeout lets a client wait for a backend slot (Picker.AcquireWait); IdleTimeout
// closes connections on which no byte moves either way. Every dial's outcome goes to
// Picker.ReportDial (passive health), and CloseBackend resets the connections of one backend.
//
// The package does not choose backends (pool does) and does not speak HTTP (admin does).
package listener
