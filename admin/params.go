package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// target is a parsed add, remove or drain request that has passed every check.
type target struct {
	addr   pool.Address
	weight int // 0: not given
}

// errTooLarge marks a body over maxBody.
var errTooLarge = errors.New("request body too large")

// parseTarget is the one gate of every mutating endpoint (the token has been checked by the
// guard middleware). In order, so that the answer is the first rule broken: the parameters'
// syntax (400; 413 for a body too large), the address-only rule (403), for a registration
// (register true: weight read, host resolved) the address rules (403), then the client's rate
// limit (429). An empty host is the caller's own address. Unknown parameters are ignored.
func (a *API) parseTarget(r *http.Request, register bool) (target, error) {
	a.Security.init()
	t, err := a.checkRequest(r, register)
	var se *statusError
	if errors.As(err, &se) && (se.code == http.StatusForbidden || se.code == http.StatusTooManyRequests) {
		a.Security.logDenied.Do(func() {
			a.logger().Warn("admin request refused", "client", r.RemoteAddr, "path", r.URL.Path, "err", err)
		})
	}
	return t, err
}

func (a *API) checkRequest(r *http.Request, register bool) (target, error) {
	form, err := readForm(r)
	if err != nil {
		return target{}, err
	}
	peer, client, err := a.caller(r)
	if err != nil {
		return target{}, err
	}
	t, err := parseFields(form, client, register)
	if err != nil {
		return target{}, err
	}
	if err := a.checkCaller(client, peer, t); err != nil {
		return target{}, err
	}
	known, free := a.heartbeat(t.addr.Key(), register)
	if register {
		if err := a.checkTarget(r.Context(), &t, known); err != nil {
			return target{}, err
		}
	}
	if lim := a.Security.limiter; lim != nil && !free && !lim.allow(client) {
		return target{}, &statusError{http.StatusTooManyRequests, "rate limit exceeded for " + client.String()}
	}
	return t, nil
}

// heartbeat reports whether a registration is for a backend still known (not removed), and
// whether it is a heartbeat that costs no rate-limit token: at most one per heartbeatFree.
func (a *API) heartbeat(key string, register bool) (known, free bool) {
	l, ok := a.Registry.(interface {
		Lookup(string) (pool.Status, bool)
	})
	if !register || !ok {
		return false, false
	}
	st, ok := l.Lookup(key)
	if !ok || st.State == pool.StateRemoved {
		return false, false
	}
	return true, time.Since(st.LastHeartbeat) >= heartbeatFree
}

// readForm parses the query and a form body. A malformed escape such as %zz is an error, never
// dropped, and so is a parameter given twice (in the query, the body, or both), which could
// otherwise mean one thing to a proxy and another here.
func readForm(r *http.Request) (url.Values, error) {
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, errTooLarge
		}
		return nil, fmt.Errorf("bad parameters: %w", err)
	}
	for _, name := range []string{"host", "port", "weight"} {
		if len(r.Form[name]) > 1 {
			return nil, fmt.Errorf("parameter %s given more than once", name)
		}
	}
	return r.Form, nil
}

func parseFields(form url.Values, client netip.Addr, register bool) (target, error) {
	var t target
	port, err := pool.ParsePort(form.Get("port"))
	if err != nil {
		return t, err
	}
	host := form.Get("host")
	if host == "" {
		host = client.String()
	}
	if t.addr.Host, err = pool.ParseHost(host); err != nil {
		return t, err
	}
	t.addr.Port = port
	if w := form.Get("weight"); register && w != "" {
		if t.weight, err = pool.ParseWeight(w); err != nil {
			return t, err
		}
	}
	return t, nil
}

// writeParseError answers an error of parseTarget with its status: 413, 403, 429 and 503
// where the error says so, 400 otherwise.
func writeParseError(w http.ResponseWriter, err error) {
	var se *statusError
	switch {
	case errors.Is(err, errTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
	case errors.As(err, &se):
		writeError(w, se.code, err.Error())
	default:
		writeError(w, http.StatusBadRequest, err.Error())
	}
}

// caller returns the TCP peer and the client every rule judges: the peer, unless the peer is
// a trusted proxy, in which case it is the right-most address in X-Forwarded-For (or
// X-Real-IP) that is not itself a trusted proxy. Left-most entries are whatever the client
// chose to send. A forwarded address that cannot be read is a 400: guessing would hand the
// proxy's own standing to whoever is behind it.
func (a *API) caller(r *http.Request) (peer, client netip.Addr, err error) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return peer, client, fmt.Errorf("caller address %q: %w", r.RemoteAddr, err)
	}
	peer = normalize(ap.Addr())
	client = peer
	hops := forwardedHops(r.Header)
	for i := len(hops) - 1; i >= 0 && a.trusted(client); i-- {
		if client, err = parseHop(hops[i]); err != nil {
			return peer, client, err
		}
	}
	return peer, client, nil
}

// parseHop reads one forwarded address: an IP, possibly with a port as some proxies write it.
func parseHop(s string) (netip.Addr, error) {
	s = strings.TrimSpace(s)
	if ip, err := netip.ParseAddr(s); err == nil {
		return normalize(ip), nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return normalize(ap.Addr()), nil
	}
	return netip.Addr{}, fmt.Errorf("unreadable forwarded address %q from a trusted proxy", s)
}

func forwardedHops(h http.Header) []string {
	var hops []string
	for _, v := range h.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	if len(hops) == 0 {
		if v := h.Get("X-Real-IP"); v != "" {
			hops = []string{v}
		}
	}
	return hops
}

func (a *API) trusted(ip netip.Addr) bool {
	for _, p := range a.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
