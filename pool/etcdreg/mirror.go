package etcdreg

import (
	"errors"
	"log/slog"
	"net/netip"

	"github.com/fulcrumlb/fulcrum/pool"
)

// Mirror is the Sink that keeps each service's local pool equal to what etcd holds: etcd's
// backends registered with their weight and draining flag, every other runtime backend
// removed. Static backends (from the configuration) are the instance's own and never touched.
// Keys of a service this instance does not serve are ignored: a heartbeat cannot create a
// service.
//
// A backend named by a host name is dialed at the address the instance that took its
// registration resolved and checked against its backend address rules (Entry.Address), so no
// instance resolves the name again.
type Mirror struct {
	// Pools are the local pools by service name.
	Pools map[string]*pool.Pool
	// Logger receives entries that cannot be applied; nil means slog.Default().
	Logger *slog.Logger
}

var _ Sink = (*Mirror)(nil)

func (m *Mirror) logger() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.Default()
}

// Upsert registers the backend in its service's pool, or refreshes it there, and sets its
// draining flag as etcd has it.
func (m *Mirror) Upsert(e Entry) {
	p := m.Pools[e.Service]
	if p == nil {
		return
	}
	if err := apply(p, e); err != nil {
		m.logger().Warn("etcd registry: entry not applied", "service", e.Service, "backend", e.HostPort, "err", err)
	}
}

func apply(p *pool.Pool, e Entry) error {
	a, err := pool.ParseAddress(e.HostPort)
	if err != nil {
		return err
	}
	if ip, err := netip.ParseAddr(e.Address); err == nil {
		a.IP = ip
	}
	if holds(p, a.Key(), e) {
		return nil
	}
	if _, err := p.Register(a, e.Weight); err != nil {
		return err
	}
	if e.Draining {
		return p.Drain(a.Key())
	}
	return p.Undrain(a.Key())
}

// holds reports whether p already has the backend as e describes it, so that applying e would
// change nothing. That is the rule for a change made at this instance: Shared writes it to the
// local pool as soon as etcd has taken it, and the watch then brings the same entry back,
// which is not written a second time. A removed, expired or static backend is Register's to
// decide.
func holds(p *pool.Pool, key string, e Entry) bool {
	st, ok := p.Lookup(key)
	if !ok || st.Weight != e.Weight {
		return false
	}
	switch st.State {
	case pool.StateUp, pool.StateDown: // a down backend that is also draining shows as draining
		return !e.Draining
	case pool.StateDraining:
		return e.Draining
	}
	return false
}

// Delete removes the backend from its service's pool; its connections run on.
func (m *Mirror) Delete(service, hostport string) {
	p := m.Pools[service]
	if p == nil {
		return
	}
	a, err := pool.ParseAddress(hostport)
	if err != nil {
		return
	}
	if err := p.Deregister(a.Key()); err != nil && !errors.Is(err, pool.ErrUnknownBackend) {
		m.logger().Warn("etcd registry: removal not applied", "service", service, "backend", hostport, "err", err)
	}
}

// Resync applies every entry, then removes from each pool the runtime backends etcd no longer
// holds.
func (m *Mirror) Resync(all []Entry) {
	keep := make(map[string]map[string]bool, len(m.Pools))
	for name := range m.Pools {
		keep[name] = make(map[string]bool)
	}
	for _, e := range all {
		if keep[e.Service] == nil {
			continue
		}
		m.Upsert(e)
		if a, err := pool.ParseAddress(e.HostPort); err == nil {
			keep[e.Service][a.Key()] = true
		}
	}
	for name, p := range m.Pools {
		for _, r := range p.Export() {
			key := pool.Address{Host: r.Host, Port: r.Port}.Key()
			if !r.Static && !r.Removed && !keep[name][key] {
				m.Delete(name, key)
			}
		}
	}
}
