package listener

import (
	"context"
	"fmt"
	"net"
	"runtime"
)

// DataPlane names how a Server runs its connections. Both planes behave the same to clients,
// backends, the Picker and the Observer; they differ in what each connection costs.
type DataPlane string

const (
	// PlaneGoroutine gives each connection goroutines over Go's netpoller, and moves its bytes
	// with the DataPath (Splice: (*net.TCPConn).ReadFrom, which splices). It runs everywhere.
	PlaneGoroutine DataPlane = "goroutine"
	// PlaneEpoll runs a few event loops, each on a locked OS thread with its own epoll
	// instance, that own every connection from accept to close over raw non-blocking sockets
	// (eloop_linux.go). Linux only.
	PlaneEpoll DataPlane = "epoll"
	// PlaneSockmap is PlaneEpoll whose long-lived connections move into a BPF sockmap, where
	// the kernel relays their bytes (eloop_relay_sockmap_linux.go). Linux with BPF sockmap
	// support, as root or with CAP_BPF and CAP_NET_ADMIN; NewSockmapLoops says what is missing.
	PlaneSockmap DataPlane = "sockmap"
)

// smallRead is the buffer for reads below the splice threshold, on both planes. A read that
// fills it means a bulk transfer is under way, and the bytes queued behind it are spliced
// (HAProxy's splice-auto idea).
const smallRead = 16 << 10

// ParseDataPlane reads a --data-plane value.
func ParseDataPlane(s string) (DataPlane, error) {
	switch DataPlane(s) {
	case PlaneEpoll, PlaneGoroutine, PlaneSockmap:
		return DataPlane(s), nil
	}
	return "", fmt.Errorf("data plane %q: want %s, %s or %s", s, PlaneEpoll, PlaneGoroutine, PlaneSockmap)
}

// Planes lists the data planes this system can run: goroutine everywhere, epoll on Linux.
func Planes() []DataPlane {
	if runtime.GOOS == "linux" {
		return []DataPlane{PlaneGoroutine, PlaneEpoll}
	}
	return []DataPlane{PlaneGoroutine}
}

// DefaultDataPlane is epoll where it exists (Linux), goroutine elsewhere.
func DefaultDataPlane() DataPlane {
	if runtime.GOOS == "linux" {
		return PlaneEpoll
	}
	return PlaneGoroutine
}

// DefaultLoops is the number of event loops when none is set: one per P but one, which stays
// free for the admin API, health checks and signals. A loop blocked in epoll_wait gives its P
// up, but a waking loop needs one at once: with a P spare it does not wait for it.
func DefaultLoops() int { return max(runtime.GOMAXPROCS(0)-1, 1) }

// plane runs one Server's connections: goPlane (goplane.go) or the Server on the event loops
// (loopServer, eloop_linux.go). Server.newPlane chooses it; both tell every transition of a
// connection to the Server's connBook, and differ only in how they run connections and move
// their bytes.
type plane interface {
	// Serve accepts on ln until Shutdown, then returns ErrServerClosed.
	Serve(ln net.Listener) error
	// Shutdown stops accepting, waits for connections until ctx ends, then resets the rest.
	Shutdown(ctx context.Context) error
	// CloseBackend resets the connections to one backend, connecting ones included.
	CloseBackend(key string) int
	// ActiveConns is the number of client connections being served.
	ActiveConns() int
	// adopt serves a connection an SNIRouter accepted and routed to this Server (sni.go),
	// its cap slot taken; false when the plane is shutting down and did not take it.
	adopt(c *net.TCPConn, info ConnInfo, prefix []byte) bool
}

// failedPlane stands for a plane that could not be made (epoll off Linux): Serve fails.
type failedPlane struct{ err error }

func (f failedPlane) Serve(ln net.Listener) error {
	ln.Close()
	return f.err
}

func (failedPlane) Shutdown(context.Context) error            { return nil }
func (failedPlane) CloseBackend(string) int                   { return 0 }
func (failedPlane) ActiveConns() int                          { return 0 }
func (failedPlane) adopt(*net.TCPConn, ConnInfo, []byte) bool { return false }
