package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/fulcrumlb/fulcrum/pool"
)

// op is what a mutating request asks for.
type op int

const (
	opAdd    op = iota // register or heartbeat
	opRemove           // deregister, maybe force
	opDrain            // drain or undrain
)

// request is a parsed add, remove, drain or undrain request: everything the handler acts on.
type request struct {
	op     op
	svc    *Service     // the service named by the service parameter; default when absent
	addr   pool.Address // IP set when the host is an address literal; a name is resolved later
	weight int          // 0: not given (add only)
	force  bool         // remove only: also reset the backend's connections
	client netip.Addr   // the caller every rule judges (through trusted proxies)
	peer   netip.Addr   // the TCP peer
}

// errTooLarge marks a body over maxBody.
var errTooLarge = errors.New("request body too large")

// parseRequest reads a mutating request's parameters (the token has been checked by the guard
// middleware): a syntax error is a 400, a body too large a 413. An empty host is the caller's
// own address. A malformed service name is a 400, an unknown service a 404. Unknown parameters
// are ignored.
func (a *API) parseRequest(r *http.Request, o op) (request, error) {
	form, err := readForm(r, "service", "host", "port", "weight", "force")
	if err != nil {
		return request{}, err
	}
	req := request{op: o}
	if req.svc, err = a.service(form.Get("service")); err != nil {
		return request{}, err
	}
	if req.peer, req.client, err = a.caller(r); err != nil {
		return request{}, err
	}
	if err := req.parseFields(form); err != nil {
		return request{}, err
	}
	return req, nil
}

// readForm parses the query and a form body. A malformed escape such as %zz is an error, never
// dropped, and so is any of the single parameters given twice (in the query, the body, or
// both), which could otherwise mean one thing to a proxy and another here.
func readForm(r *http.Request, single ...string) (url.Values, error) {
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, errTooLarge
		}
		return nil, fmt.Errorf("bad parameters: %w", err)
	}
	for _, name := range single {
		if len(r.Form[name]) > 1 {
			return nil, fmt.Errorf("parameter %s given more than once", name)
		}
	}
	return r.Form, nil
}

func (req *request) parseFields(form url.Values) error {
	port, err := pool.ParsePort(form.Get("port"))
	if err != nil {
		return err
	}
	host := form.Get("host")
	if host == "" {
		host = req.client.String()
	}
	if req.addr.Host, err = pool.ParseHost(host); err != nil {
		return err
	}
	req.addr.Port = port
	if ip, err := netip.ParseAddr(req.addr.Host); err == nil {
		req.addr.IP = normalize(ip)
	}
	if w := form.Get("weight"); req.op == opAdd && w != "" {
		if req.weight, err = pool.ParseWeight(w); err != nil {
			return err
		}
	}
	if f := form.Get("force"); req.op == opRemove && f != "" {
		if req.force, err = strconv.ParseBool(f); err != nil {
			return fmt.Errorf("force %q: must be 1 or 0", f)
		}
	}
	return nil
}

// writeRequestError answers a refused request with its status: 413, 403, 404, 429 and 503
// where the error says so, 400 otherwise. Refusals by the access rules are logged, at most
// once a second.
func (a *API) writeRequestError(w http.ResponseWriter, r *http.Request, err error) {
	var se *statusError
	if errors.As(err, &se) && (se.code == http.StatusForbidden || se.code == http.StatusTooManyRequests) {
		a.Security.logDenied.Do(func() {
			a.logger().Warn("admin request refused", "client", r.RemoteAddr, "path", r.URL.Path, "err", err)
		})
	}
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
