package admin

import (
	"testing"

	"github.com/fulcrumlb/fulcrum/pool"
)

// forgetfulRegistry forgets a backend right after the API has looked it up, as a remove or the
// sweeper can do at any moment while a heartbeat is handled.
type forgetfulRegistry struct {
	*pool.Pool
}

func (f forgetfulRegistry) Lookup(key string) (pool.Status, bool) {
	st, ok := f.Pool.Lookup(key)
	if ok {
		f.Pool.Deregister(key) // idle, so forgotten at once
	}
	return st, ok
}

// TestHeartbeatOfForgottenBackendPassesTheRules: a heartbeat whose backend is forgotten while it
// is handled is a new registration, so its name is resolved and checked again. Before the
// refresh was one locked call, the backend came back holding its bare name: dialed by name (a
// fresh lookup at every dial) and never checked against the address rules.
func TestHeartbeatOfForgottenBackendPassesTheRules(t *testing.T) {
	dns := &fakeDNS{
		answers: map[string][]string{"svc.test": {"198.51.100.7"}},
		rebind:  map[string][]string{"svc.test": {"169.254.169.254"}}, // refused from then on
	}
	a, p := newAPI(t, func(s *Security) {
		s.LookupHost = dns.lookup
		s.Rate, s.Burst = 20, 40 // the default limit, which looks the backend up to price a heartbeat
	})
	a.Registry = forgetfulRegistry{p}
	h := a.Handler()
	add := req{target: "/upstream/add?" + q("host", "svc.test", "port", "80")}
	check(t, a, h, add, 200)
	if got := p.Snapshot()[0].Address.DialHost(); got != "198.51.100.7" {
		t.Fatalf("first registration dials %s", got)
	}

	w := add.do(t, h)
	if w.Code != 403 {
		t.Errorf("heartbeat of a forgotten backend whose name now resolves to a refused address: %d %s, want 403", w.Code, w.Body)
	}
	for _, st := range p.Snapshot() {
		if st.State != pool.StateRemoved {
			t.Errorf("backend %s is %s dialing %s: it skipped the address rules", st.Key, st.State, st.Address.DialHost())
		}
	}
	if n := dns.calls.Load(); n != 2 {
		t.Errorf("%d lookups, want 2 (the forgotten backend is registered anew)", n)
	}
}
