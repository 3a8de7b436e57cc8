package admin

import (
	"fmt"
	"net/http"

	"github.com/fulcrumlb/fulcrum/pool"
)

// Service is one balanced service the API manages: a name, where it listens, how it picks,
// and the registry of its backends. Only Name and Registry are required.
type Service struct {
	// Name is the service's name (pool.ParseServiceName); names are distinct within an API.
	Name string
	// Listen are the service's listen addresses, as /upstream/status shows them; nil is none.
	Listen []string
	// SNI are the server-name patterns routed to the service on a shared listen address, as
	// /upstream/status shows them ("sni"); nil is none (not routed by name, or the default).
	SNI []string
	// TopClients lists the n client addresses with the most open connections, for status
	// ("top_clients"); nil means the service has no per-client bounds.
	TopClients func(n int) []ClientConns
	// Balance is the service's balancing policy as configured (--balance); "" means not known.
	Balance string
	// Registry holds the service's backends.
	Registry pool.Registry
	// CloseBackend resets the established connections to one of the service's backends, for
	// remove?force=1, and returns how many; nil means force=1 only removes.
	CloseBackend func(key string) int
}

// services are the services the API manages: API.Services, or, when that is empty, the one
// service "default" over API.Registry and API.CloseBackend, listening on Overview.Listen.
func (a *API) services() []Service {
	if len(a.Services) > 0 {
		return a.Services
	}
	var listen []string
	if a.Overview != nil {
		listen = a.Overview.Listen
	}
	return []Service{{Name: pool.DefaultService, Listen: listen, Registry: a.Registry, CloseBackend: a.CloseBackend}}
}

// service returns the service a request names: "" means pool.DefaultService. A name that is
// not a valid service name is a 400; a valid one that is not configured, a 404. Both leave
// every registry alone.
func (a *API) service(name string) (*Service, error) {
	name = serviceOrDefault(name)
	if _, err := pool.ParseServiceName(name); err != nil {
		return nil, err
	}
	svcs := a.services()
	for i := range svcs {
		if svcs[i].Name == name {
			return &svcs[i], nil
		}
	}
	return nil, &statusError{http.StatusNotFound, fmt.Sprintf("service %q is not configured", name)}
}

// ClientConns is one client address (an IPv4 /32 or an IPv6 /64) and its open connections.
type ClientConns struct {
	Client string `json:"client"`
	Open   int    `json:"open"`
}
