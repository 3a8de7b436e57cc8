//go:build linux

package listener

import "time"

// SockmapConfig sets up the sockmap data plane (PlaneSockmap).
type SockmapConfig struct {
	// After is how long a connection lives on the user-space relay before it moves into the
	// kernel: zero means DefaultSockmapAfter; a negative value moves every connection at once.
	After time.Duration
	// MaxConns sizes the kernel maps (both sockets of this many connections); zero means
	// DefaultSockmapConns. A connection that finds the maps full stays on the relay.
	MaxConns int
}

// DefaultSockmapAfter is how long a connection lives before it moves into the kernel when
// SockmapConfig.After is zero. Age, not bytes, is the test: what promotion saves is the
// per-message cost of crossing user space, which a chatty long-lived connection pays as
// much as a bulk one, while the cost of promoting (four map updates and two socket options)
// must stay off the short connections that make a connection rate; a request/response
// connection of an HTTP/1.0 kind ends well inside this.
const DefaultSockmapAfter = 100 * time.Millisecond

// planeSockmapNow is PlaneSockmap with every connection moved at once, for the tests that
// run each behaviour on it (a Server with its own loops has no SockmapConfig to say so).
const planeSockmapNow DataPlane = "sockmap-now"

// NewSockmapLoops returns n event loops (0 or less: DefaultLoops()) whose long-lived
// connections move into a BPF sockmap. It loads the kernel side at once, and fails with one
// line saying what the system lacks (kernel support, privilege).
func NewSockmapLoops(n int, cfg SockmapConfig) (*EventLoops, error) {
	k, err := loadSockmapKernel(cfg.MaxConns)
	if err != nil {
		return nil, err
	}
	el := NewEventLoops(n)
	el.mover = moverSockmap
	el.smap = sockmapSettings{kernel: k, after: cfg.After}
	if el.smap.after == 0 {
		el.smap.after = DefaultSockmapAfter
	}
	return el, nil
}

// CheckSockmap reports what the system lacks for PlaneSockmap, or nil: it loads the kernel
// side and unloads it.
func CheckSockmap() error {
	k, err := loadSockmapKernel(1)
	k.close()
	return err
}

// SockmapStats are the sockmap plane's counts.
type SockmapStats struct {
	InKernel   int // connections the kernel relays
	Promoted   int // connections ever moved into the kernel
	MapEntries int // sockets in the kernel maps: twice InKernel for each map, once they settle, less one per paused direction
	// Paused counts directions ever taken out of the kernel because their destination
	// stopped reading (back-pressure): the user-space relay moved them from then on.
	Paused int
}

// SockmapStats counts the connections in the kernel and the sockets in its maps; zero on
// other data planes.
func (el *EventLoops) SockmapStats() SockmapStats {
	k := el.smap.kernel
	if k == nil {
		return SockmapStats{}
	}
	return SockmapStats{InKernel: int(k.inKernel.Load()), Promoted: int(k.promotions.Load()), MapEntries: k.entries(),
		Paused: int(k.paused.Load())}
}

// ownLoops are the event loops of a Server that has none given.
func ownLoops(p DataPlane) (*EventLoops, error) {
	switch p {
	case PlaneSockmap:
		return NewSockmapLoops(0, SockmapConfig{})
	case planeSockmapNow:
		return NewSockmapLoops(0, SockmapConfig{After: -1})
	}
	return NewEventLoops(0), nil
}
