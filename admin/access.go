package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/fulcrumlb/fulcrum/pool"
)

// Security is the admin API's access rules. Its zero value admits what it must to stay
// useful and refuses what is always dangerous: no token (so a remote caller may register,
// heartbeat or remove only its own address, and a loopback caller any host), any backend
// network, no loop check (no own address known), no rate limit.
type Security struct {
	// Token, when not empty, is required as "Authorization: Bearer <token>" by every mutating
	// endpoint (and by the read endpoints with TokenRead). A caller holding it may name any
	// host. Empty means the address-only rule applies instead.
	Token string
	// TokenRead extends the token to status, metrics and every other read endpoint; /healthz
	// stays open. It means nothing without Token.
	TokenRead bool
	// AllowBackends are the networks a backend may be in; nil means any. A link-local backend
	// is admitted only when one of these contains it.
	AllowBackends []netip.Prefix
	// Self are the balancer's own listen and admin addresses; a backend there would be a loop.
	// An unspecified address (a wildcard listener) stands for every local address and the
	// whole loopback range. Nil means no loop check.
	Self []netip.AddrPort
	// Rate is how many mutating requests per second a client (an IPv4 address, or an IPv6
	// /64) may make, and Burst how many at once. Zero Rate means no limit; zero Burst means
	// twice Rate. A heartbeat of a known backend at most once per heartbeatFree is free.
	Rate  rate.Limit
	Burst int
	// MaxBuckets bounds the rate limiter's memory: the least recently seen client is forgotten
	// (its bucket refills) beyond it. Zero means 16384.
	MaxBuckets int
	// LookupHost resolves a backend name; nil means net.DefaultResolver.LookupNetIP. Tests
	// replace it.
	LookupHost func(ctx context.Context, host string) ([]netip.Addr, error)
	// Interfaces lists this machine's addresses with their networks, for the wildcard loop
	// check and directed broadcasts; nil means net.InterfaceAddrs. Tests replace it.
	Interfaces func() ([]netip.Prefix, error)

	once      sync.Once
	limiter   *limiter
	local     localCache
	logDenied rate.Sometimes // refusals are logged at most once a second
}

// init sets up the parts of Security built from its fields, once, before the first request.
func (s *Security) init() {
	s.once.Do(func() {
		s.logDenied.Interval = time.Second
		if s.Rate > 0 {
			s.limiter = newLimiter(s.Rate, s.Burst, s.MaxBuckets)
		}
	})
}

// statusError is an error that carries the HTTP status it is answered with.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

func forbidden(format string, args ...any) error {
	return &statusError{http.StatusForbidden, fmt.Sprintf(format, args...)}
}

// nat64 is the well-known NAT64 prefix; an address in it reaches the IPv4 address it embeds.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// normalize reduces an address to the one it reaches: IPv4-mapped IPv6 and NAT64 addresses
// become the IPv4 address they carry, and zones are dropped (ParseHost refuses them anyway).
func normalize(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if nat64.Contains(ip) {
		b := ip.As16()
		return netip.AddrFrom4([4]byte(b[12:]))
	}
	return ip
}

var (
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	broadcast   = netip.AddrFrom4([4]byte{255, 255, 255, 255})
)

// checkBackend applies the address rules to one address a backend would be dialed at.
func (s *Security) checkBackend(ip netip.Addr, port int) error {
	ip = normalize(ip)
	switch {
	case ip.IsUnspecified() || thisNetwork.Contains(ip):
		return forbidden("backend %s: unspecified address", ip)
	case ip.IsMulticast():
		return forbidden("backend %s: multicast address", ip)
	case ip == broadcast || s.local.isBroadcast(s.Interfaces, ip):
		return forbidden("backend %s: broadcast address", ip)
	case ip.IsLinkLocalUnicast() && !s.allowListed(ip):
		return forbidden("backend %s: link-local address (allow it with --allow-backend)", ip)
	case len(s.AllowBackends) > 0 && !s.allowListed(ip):
		return forbidden("backend %s: outside --allow-backend", ip)
	case s.isSelf(ip, port):
		return forbidden("backend %s: the balancer's own listen or admin address (a loop)",
			netip.AddrPortFrom(ip, uint16(port)))
	}
	return nil
}

func (s *Security) allowListed(ip netip.Addr) bool {
	for _, p := range s.AllowBackends {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// isSelf reports whether ip:port reaches one of the balancer's own listeners.
func (s *Security) isSelf(ip netip.Addr, port int) bool {
	for _, self := range s.Self {
		if int(self.Port()) != port {
			continue
		}
		addr := normalize(self.Addr())
		if addr == ip {
			return true
		}
		if addr.IsUnspecified() && (ip.IsLoopback() || s.local.isLocal(s.Interfaces, ip)) {
			return true
		}
	}
	return false
}

// authorize applies every access rule that needs no registry change, in order, so that the
// answer is the first rule broken: the address-only rule (403), for an add naming an address
// literal the backend address rules (403), then the client's rate limit (429). On success it
// returns the refund of the token it took: a request refused later (its name resolves to a
// refused address, say) costs nothing.
func (a *API) authorize(req *request) (refund func(), err error) {
	a.Security.init()
	if err := a.checkCaller(req); err != nil {
		return nil, err
	}
	if req.op == opAdd && req.addr.IP.IsValid() {
		if err := a.Security.checkBackend(req.addr.IP, req.addr.Port); err != nil {
			return nil, err
		}
	}
	lim := a.Security.limiter
	if lim == nil || a.freeHeartbeat(req) {
		return func() {}, nil
	}
	refund, ok := lim.take(req.client)
	if !ok {
		return nil, &statusError{http.StatusTooManyRequests, "rate limit exceeded for " + req.client.String()}
	}
	return refund, nil
}

// freeHeartbeat reports whether an add is a heartbeat of a registered backend spaced at least
// heartbeatFree after the previous one: those cost no rate-limit token. The look-up decides
// only the charge; whether the backend is known is decided again, under the registry's lock,
// when the heartbeat is applied.
func (a *API) freeHeartbeat(req *request) bool {
	if req.op != opAdd {
		return false
	}
	st, ok := req.svc.Registry.Lookup(req.addr.Key())
	return ok && st.State != pool.StateRemoved && time.Since(st.LastHeartbeat) >= heartbeatFree
}

// checkCaller applies the address-only rule: without a token, a caller may name only its own
// address, unless it is on this machine's loopback.
func (a *API) checkCaller(req *request) error {
	if a.Security.Token != "" {
		return nil // the middleware has checked it: a token holder may name any host
	}
	client := req.client
	if client.IsLoopback() {
		if req.peer.IsLoopback() {
			return nil // the operator on this machine
		}
		return forbidden("client %s: a loopback address forwarded by a remote proxy", client)
	}
	if req.addr.IP != client {
		return forbidden("host %s: without --admin-token a caller may name only its own address (%s)",
			req.addr.Host, client)
	}
	return nil
}

// resolveBackend gives a new backend named by a host name the address it will be dialed at:
// the name is resolved once and every address must pass the backend address rules, the first
// being the one stored and dialed.
func (a *API) resolveBackend(ctx context.Context, addr *pool.Address) error {
	if addr.IP.IsValid() {
		return nil // an address literal: authorize has checked it
	}
	ips, err := a.resolve(ctx, addr.Host)
	if err != nil {
		return err
	}
	for _, ip := range ips {
		if err := a.Security.checkBackend(ip, addr.Port); err != nil {
			return fmt.Errorf("host %s resolves to a refused address: %w", addr.Host, err)
		}
	}
	addr.IP = normalize(ips[0])
	return nil
}

// registryError gives a registry's error about the backend key the status it is answered
// with: an unknown backend is 404, a full registry 429, a shared registry that cannot answer
// 503, anything else (a weight out of range) 400.
func registryError(key string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pool.ErrUnknownBackend):
		return &statusError{http.StatusNotFound, "backend " + key + " is not registered"}
	case errors.Is(err, pool.ErrRegistryFull):
		return &statusError{http.StatusTooManyRequests, err.Error()}
	case errors.Is(err, pool.ErrUnavailable):
		// The cause is the etcd client's own text (gRPC codes): the log has it, the reply says
		// what the caller can do.
		return &statusError{http.StatusServiceUnavailable, "the shared registry (etcd) is unavailable: it cannot answer now; retry later"}
	}
	return err
}
