package admin

import (
	"cmp"
	"net/http"
	"slices"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/buildinfo"
	"github.com/fulcrumlb/fulcrum/pool"
)

// server is one entry of /upstream/status. The field names are the API's since its first
// version: heartbeat scripts and dashboards read them.
type server struct {
	Service   string `json:"service"` // the service the backend belongs to
	Host      string `json:"host"`
	Address   string `json:"address"` // the IP dialed: resolved once when host is a name
	Port      int    `json:"port"`
	Weight    int    `json:"weight"`
	ConnCount int64  `json:"conn_count"`
	// TotalConns counts the connections the pool gave the backend, those whose dial then
	// failed included; fulcrum_backend_connections_routed_total counts only those dialed.
	TotalConns uint64 `json:"total_conns"`
	// LastHeartbeat is the last heartbeat this balancer took, or with a shared registry the
	// last one or the last change of the backend's key it saw: there the lease in the registry
	// keeps the backend, renewed through any balancer, so this time says nothing of liveness.
	LastHeartbeat float64 `json:"last_heartbeat"`
	CreatedTime   float64 `json:"created_time"`
	State         string  `json:"state"`
	LastError     string  `json:"last_error"`      // the last failed dial or check; "" if none
	LastErrorTime float64 `json:"last_error_time"` // unix seconds; 0 if none
	BytesIn       uint64  `json:"bytes_in"`        // client → backend, all connections so far
	BytesOut      uint64  `json:"bytes_out"`       // backend → client
	Static        bool    `json:"static"`          // from --backend or the config file, not registered by heartbeat
}

// topClientsShown is how many clients a service's top_clients lists.
const topClientsShown = 10

// serviceSummary is one element of the services list of /upstream/status.
type serviceSummary struct {
	Name   string   `json:"name"`
	Listen []string `json:"listen"` // never null: [] when not known
	SNI    []string `json:"sni"`    // server-name patterns routed here; never null: [] for none
	// TopClients are the 10 clients with the most open connections; never null.
	TopClients []ClientConns `json:"top_clients"`
	Balance    string        `json:"balance"`  // "" when not known
	Backends   int           `json:"backends"` // known backends, in any state
	Active     int64         `json:"active"`   // connections counted on them now
}

type statusReply struct {
	// Version and Revision name the running build: the module version ("devel" for a build
	// from a checkout) and the VCS revision ("unknown" when the binary does not record one;
	// "-modified" after it when the work tree had changes).
	Version   string           `json:"version"`
	Revision  string           `json:"revision"`
	Servers   []server         `json:"servers"`
	Total     int              `json:"total"`
	Timestamp float64          `json:"timestamp"`
	Services  []serviceSummary `json:"services"`
	// The registry's kind and health: with an Overview or a shared registry (registryState).
	Registry        *string `json:"registry,omitempty"`
	RegistryHealthy *bool   `json:"registry_healthy,omitempty"`
	*overview               // listeners, uptime, listener totals: only when API.Overview is set
}

// status lists the backends of every service, or with ?service=NAME of that one (an empty
// value is the same as none), sorted by service name and then by key, and a summary of each
// service listed.
func (a *API) status(w http.ResponseWriter, r *http.Request) {
	svcs, err := a.listedServices(r)
	if err != nil {
		a.writeRequestError(w, r, err)
		return
	}
	snaps := make([][]pool.Status, len(svcs))
	n := 0
	for i := range svcs {
		snaps[i] = svcs[i].Registry.Snapshot()
		n += len(snaps[i])
	}
	build := buildinfo.Read()
	reply := statusReply{
		Version:   cmp.Or(a.Overview.version(), build.Version),
		Revision:  build.RevisionText(),
		Servers:   make([]server, 0, n),
		Total:     n,
		Timestamp: unixSeconds(time.Now()),
		Services:  make([]serviceSummary, 0, len(svcs)),
	}
	var active int64 // over the services listed
	for i, svc := range svcs {
		sum := serviceSummary{Name: svc.Name, Listen: svc.Listen, Balance: svc.Balance, Backends: len(snaps[i])}
		if sum.Listen == nil {
			sum.Listen = []string{}
		}
		sum.SNI = append([]string{}, svc.SNI...)
		sum.TopClients = []ClientConns{}
		if svc.TopClients != nil {
			sum.TopClients = append(sum.TopClients, svc.TopClients(topClientsShown)...)
		}
		for _, s := range snaps[i] {
			sum.Active += s.Active
			reply.Servers = append(reply.Servers, statusEntry(svc.Name, s))
		}
		reply.Services = append(reply.Services, sum)
		active += sum.Active
	}
	if a.Overview != nil || a.Shared != nil {
		st := a.registryState()
		reply.Registry, reply.RegistryHealthy = &st.Registry, &st.RegistryHealthy
	}
	reply.overview = a.Overview.fields()
	if read := a.Overview.sockmapSource(); read != nil {
		if len(svcs) < len(a.services()) { // ?service=: the counts are the whole process's
			active = a.activeTotal()
		}
		counts := splitActive(read(), active)
		reply.overview.Sockmap = &counts
	}
	writeJSON(w, http.StatusOK, reply)
}

// listedServices are the services a status request lists, sorted by name: the one its service
// parameter names, or every one.
func (a *API) listedServices(r *http.Request) ([]Service, error) {
	form, err := readForm(r, "service")
	if err != nil {
		return nil, err
	}
	if name := form.Get("service"); name != "" {
		svc, err := a.service(name)
		if err != nil {
			return nil, err
		}
		return []Service{*svc}, nil
	}
	svcs := slices.Clone(a.services())
	slices.SortStableFunc(svcs, func(x, y Service) int { return cmp.Compare(x.Name, y.Name) })
	return svcs, nil
}

func statusEntry(service string, s pool.Status) server {
	return server{
		Service:       service,
		Host:          s.Address.Host,
		Address:       s.Address.DialHost(),
		Port:          s.Address.Port,
		Weight:        s.Weight,
		ConnCount:     s.Active,
		TotalConns:    s.Total,
		LastHeartbeat: unixSeconds(s.LastHeartbeat),
		CreatedTime:   unixSeconds(s.Created),
		State:         string(s.State),
		LastError:     s.LastError,
		LastErrorTime: unixSecondsOrZero(s.LastErrorTime),
		BytesIn:       s.BytesIn,
		BytesOut:      s.BytesOut,
		Static:        s.Static,
	}
}
