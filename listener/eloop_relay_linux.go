//go:build linux

package listener

// relay moves the bytes of a loop's established connections: the byte-mover seam. The
// connect step (eloop_connect_linux.go) books the dial and hands the relay an established
// pair; from then on the loop passes it every event on either socket, asks it whether bytes
// moved where the loop cannot see them when the idle deadline passes, and stops it when the
// connection ends, whatever the cause. A relay fails a connection with loop.finish.
//
// A relay is one value per loop; a connection's own state (spliceConn for the first relay)
// lives in its loopConn, so relaying costs no allocation and no lock per connection.
type relay interface {
	// start begins relaying c, whose both sockets are connected.
	start(l *loop, c *loopConn, h handoff)
	// event handles readiness ev on c's client (fromClient) or backend socket.
	event(l *loop, c *loopConn, fromClient bool, ev uint32)
	// progressed reports whether bytes moved since its last call out of the loop's sight (in
	// the kernel, toward a slow reader); the loop's own moves set c.lastActive.
	progressed(c *loopConn) bool
	// stop gives back what c holds (buffers, pipes) as its sockets close (they are still
	// open, never read or written again), and returns the bytes moved each way: up (client →
	// backend) and down.
	stop(l *loop, c *loopConn) (up, down int64)
	// tick handles c's deadline when the relay set it for itself (the sockmap mover waits for
	// the kernel to deliver bytes before passing a FIN on); false leaves it to the loop.
	tick(l *loop, c *loopConn) bool
}

// handoff is what the connect step hands a relay along with an established pair.
type handoff struct {
	prefix      []byte // goes to the backend before any client byte
	clientBytes int    // the last clientBytes of prefix are the client's own: they count as moved up
	clientEv    uint32 // readiness seen on the client before relaying: edge-triggered, it will not come again
	backendEv   uint32 // the event that reported the connect done
}

// byteMover names a way the event loops move bytes. Adding one (an in-kernel BPF sockmap
// mover, say) takes one new file, eloop_relay_<name>_linux.go, with a type that implements
// relay; one constant here with its entry in relays; and its value for the flag that
// chooses it. The lifecycle (connBook), the connect step and the loop do not change.
type byteMover uint8

const (
	// moverSplice reads small messages through the loop's 16 KiB buffer and splices bulk
	// transfers through pooled pipes (eloop_relay_splice_linux.go).
	moverSplice byteMover = iota
	// moverSockmap starts each connection on moverSplice and promotes the long-lived ones
	// into a BPF sockmap, where the kernel relays their bytes (eloop_relay_sockmap_linux.go).
	moverSockmap
)

// relays makes the relay of each byte mover for one loop of el.
var relays = [...]func(el *EventLoops) relay{
	moverSplice:  func(*EventLoops) relay { return spliceRelay{} },
	moverSockmap: newSockmapRelay,
}

// newRelay is the relay of el's byte mover.
func newRelay(el *EventLoops) relay { return relays[el.mover](el) }
