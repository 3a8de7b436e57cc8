package bench

import (
	"fmt"
	"os/exec"
	"strings"
)

// The sockmap yardstick is a throw-away prototype kept outside the repository, like the
// yardstick: an epoll loop that accepts, dials the first backend and hands both sockets to
// the kernel at once, where a BPF verdict program redirects every byte to the peer socket.
// It sets fulcrum-sockmap's kernel data path beside the plainest one that works, with none of
// fulcrum's policy (a threshold before moving a connection, balancing, back-pressure). It
// needs root (or CAP_BPF and CAP_NET_ADMIN); without them it exits at start and the peer is
// skipped with its message.

// sockmapYardstickSetup is what the report says of the peer besides the path it came from.
const sockmapYardstickSetup = "the in-kernel prototype: every connection goes into the kernel at once, " +
	"only the first backend is used (balance puts every connection there), no back-pressure; " +
	"its balancer CPU is its user-space loop alone (the kernel's redirects count in machine CPU)"

// startSockmapYardstick runs the prototype r in front of backends (it forwards to the first
// alone) and waits until it accepts connections.
func startSockmapYardstick(r ruler, backends []string) (*Process, Target, error) {
	if r.err != nil {
		return nil, Target{}, r.err
	}
	p, listen, err := startServer(SockmapYardstick, func(listen string) (*exec.Cmd, error) {
		return exec.Command(r.bin, "serve", "--listen", listen, "--backends", strings.Join(backends, ",")), nil
	}, canDial)
	if err != nil {
		return nil, Target{}, err
	}
	// Its optional --admin endpoint gives totals, not per-backend counts: Counts stays nil.
	setup := fmt.Sprintf("`%s`, %s", r.from, sockmapYardstickSetup)
	return p, Target{Name: SockmapYardstick, Addr: listen, PID: p.PID(), Setup: setup}, nil
}
