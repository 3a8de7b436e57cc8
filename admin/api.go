package admin

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// API serves the admin endpoints over the registries of one or more services. Services, or
// for a balancer of one service Registry, must be set; every other field's zero value is
// documented.
type API struct {
	// Services are the services whose backends the API manages; a mutating request's service
	// parameter picks one (absent: "default"). Empty means one service, "default", over
	// Registry and CloseBackend, listening on Overview.Listen.
	Services []Service
	// Registry holds the backends when Services is empty; ignored otherwise.
	Registry pool.Registry
	// TrustedProxies are the peers whose X-Forwarded-For and X-Real-IP are believed; nil
	// means none: the TCP peer is always the caller.
	TrustedProxies []netip.Prefix
	// Logger receives registry changes made through the API; nil means slog.Default().
	Logger *slog.Logger
	// Security is the access policy: token, address rules, rate limit (see Security).
	Security Security
	// CloseBackend resets the established connections to a backend, for remove?force=1, and
	// returns how many, when Services is empty (ignored otherwise); nil means force=1 only
	// removes.
	CloseBackend func(key string) int
	// Metrics counts heartbeats and serves GET /metrics; nil means metrics are off (404).
	Metrics *Metrics
	// Overview adds listeners, uptime and listener totals to /upstream/status for the status
	// page; nil means those fields are left out.
	Overview *Overview
	// Shared is the registry shared with other balancers, whose kind and health the status
	// and metrics report; nil means Registry is this process's own (in memory).
	Shared SharedRegistry
}

// Handler returns the API's routes.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/upstream/add", a.only(a.add))
	mux.HandleFunc("/upstream/remove", a.only(a.remove))
	mux.HandleFunc("/upstream/status", a.only(a.status))
	mux.HandleFunc("/upstream/drain", a.only(a.drain))
	mux.HandleFunc("/upstream/undrain", a.only(a.undrain))
	mux.HandleFunc("/healthz", a.only(a.healthz))
	a.operatingRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})
	return a.guard(mux)
}

// maxBody caps a form body; admin requests carry a few short parameters.
const maxBody = 64 << 10

// only admits GET and POST (the API's original clients use both) and caps the body.
func (a *API) only(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			w.Header().Set("Allow", "GET, POST")
			writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		h(w, r)
	}
}

func (a *API) logger() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}

// add registers a backend or, for one still registered, records its heartbeat. Like every
// mutating handler it reads parse, authorize, act.
func (a *API) add(w http.ResponseWriter, r *http.Request) {
	req, err := a.parseRequest(r, opAdd)
	if err != nil {
		a.writeRequestError(w, r, err)
		return
	}
	refund, err := a.authorize(&req)
	if err != nil {
		a.writeRequestError(w, r, err)
		return
	}
	created, err := a.register(r.Context(), &req)
	if err != nil {
		refund()
		a.writeRequestError(w, r, err)
		return
	}
	if !created {
		a.Metrics.Heartbeat(req.svc.Name, req.addr.Key())
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "server": req.addr.Key(), "service": req.svc.Name})
}

// register refreshes a registered backend in one locked call. Any other (new, removed, or
// forgotten since authorize looked) goes through the backend address rules, its name resolved
// once, before the registry adds it.
func (a *API) register(ctx context.Context, req *request) (created bool, err error) {
	reg := req.svc.Registry
	known, err := reg.Heartbeat(req.addr.Key(), req.weight)
	if err != nil || known {
		return false, registryError(req.addr.Key(), err)
	}
	if err := a.resolveBackend(ctx, &req.addr); err != nil {
		return false, err
	}
	created, err = reg.Register(req.addr, req.weight)
	return created, registryError(req.addr.Key(), err)
}

// remove deregisters a backend; with force=1 it also resets the backend's connections.
func (a *API) remove(w http.ResponseWriter, r *http.Request) {
	req, err := a.parseRequest(r, opRemove)
	if err == nil {
		_, err = a.authorize(&req)
	}
	key := req.addr.Key()
	if err == nil {
		err = registryError(key, req.svc.Registry.Deregister(key))
	}
	if err != nil {
		a.writeRequestError(w, r, err)
		return
	}
	reply := map[string]any{"success": true, "removed": key, "service": req.svc.Name}
	if n := a.closeForced(&req); n >= 0 {
		reply["closed"] = n
	}
	writeJSON(w, http.StatusOK, reply)
}

func (a *API) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func unixSecondsOrZero(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return unixSeconds(t)
}

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v) // a failed write means the caller went away: nothing to do
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
