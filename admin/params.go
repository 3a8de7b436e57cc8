package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/fulcrumlb/fulcrum/pool"
)

// target is a parsed add or remove request.
type target struct {
	addr   pool.Address
	weight int // 0: not given
}

// errTooLarge marks a body over maxBody.
var errTooLarge = errors.New("request body too large")

// parseTarget reads host, port and (for add) weight from the query or a form body. An empty
// host is the caller's own address. Unknown parameters are ignored.
func (a *API) parseTarget(r *http.Request, withWeight bool) (target, error) {
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return target{}, errTooLarge
		}
		return target{}, fmt.Errorf("bad parameters: %w", err)
	}
	var t target
	port, err := pool.ParsePort(r.Form.Get("port"))
	if err != nil {
		return t, err
	}
	host := r.Form.Get("host")
	if host == "" {
		ip, err := a.callerIP(r)
		if err != nil {
			return t, err
		}
		host = ip.String()
	}
	if t.addr.Host, err = pool.ParseHost(host); err != nil {
		return t, err
	}
	t.addr.Port = port
	if w := r.Form.Get("weight"); withWeight && w != "" {
		if t.weight, err = pool.ParseWeight(w); err != nil {
			return t, err
		}
	}
	return t, nil
}

func writeParseError(w http.ResponseWriter, err error) {
	if errors.Is(err, errTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	writeError(w, http.StatusBadRequest, err.Error())
}

// callerIP is the address an empty host stands for: the TCP peer, unless the peer is a trusted
// proxy, in which case it is the right-most address in X-Forwarded-For (or X-Real-IP) that is
// not itself a trusted proxy. Left-most entries are whatever the client chose to send.
func (a *API) callerIP(r *http.Request) (netip.Addr, error) {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("caller address %q: %w", r.RemoteAddr, err)
	}
	ip := peer.Addr().Unmap()
	if !a.trusted(ip) {
		return ip, nil
	}
	hops := forwardedHops(r.Header)
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // a garbled hop: trust stops at the last address we could read
		}
		ip = hop.Unmap()
		if !a.trusted(ip) {
			break
		}
	}
	return ip, nil
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
