package admin

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// API serves the admin endpoints over a Registry. Registry must be set; every other field's
// zero value is documented.
type API struct {
	// Registry holds the backends.
	Registry pool.Registry
	// TrustedProxies are the peers whose X-Forwarded-For and X-Real-IP are believed; nil
	// means none: the TCP peer is always the caller.
	TrustedProxies []netip.Prefix
	// Logger receives registry changes made through the API; nil means slog.Default().
	Logger *slog.Logger
	// Security is the access policy: token, address rules, rate limit (see Security).
	Security Security
	// CloseBackend resets the established connections to a backend, for remove?force=1, and
	// returns how many; nil means force=1 only removes.
	CloseBackend func(key string) int
	// Metrics counts heartbeats and serves GET /metrics; nil means metrics are off (404).
	Metrics *Metrics
	// Overview adds listeners, uptime and listener totals to /upstream/status for the status
	// page; nil means those fields are left out.
	Overview *Overview
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

// only admits GET and POST (as the seed did) and caps the body.
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

func (a *API) add(w http.ResponseWriter, r *http.Request) {
	req, err := a.parseTarget(r, true)
	if err != nil {
		writeParseError(w, err)
		return
	}
	created, err := a.Registry.Register(req.addr, req.weight)
	if err != nil {
		writeRegisterError(w, err)
		return
	}
	if !created {
		a.Metrics.Heartbeat(req.addr.Key())
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "server": req.addr.Key()})
}

func (a *API) remove(w http.ResponseWriter, r *http.Request) {
	req, err := a.parseTarget(r, false)
	if err != nil {
		writeParseError(w, err)
		return
	}
	force, err := parseForce(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := a.Registry.Deregister(req.addr.Key()); err != nil {
		if errors.Is(err, pool.ErrUnknownBackend) {
			writeError(w, http.StatusNotFound, "backend "+req.addr.Key()+" is not registered")
			return
		}
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	reply := map[string]any{"success": true, "removed": req.addr.Key()}
	if n := a.closeForced(force, req.addr.Key()); n >= 0 {
		reply["closed"] = n
	}
	writeJSON(w, http.StatusOK, reply)
}

// server is one entry of /upstream/status, with the seed design's field names.
type server struct {
	Host          string  `json:"host"`
	Address       string  `json:"address"` // the IP dialed: resolved once when host is a name
	Port          int     `json:"port"`
	Weight        int     `json:"weight"`
	ConnCount     int64   `json:"conn_count"`
	TotalConns    uint64  `json:"total_conns"`
	LastHeartbeat float64 `json:"last_heartbeat"`
	CreatedTime   float64 `json:"created_time"`
	State         string  `json:"state"`
	LastError     string  `json:"last_error"`      // the last failed dial or check; "" if none
	LastErrorTime float64 `json:"last_error_time"` // unix seconds; 0 if none
	BytesIn       uint64  `json:"bytes_in"`        // client → backend, all connections so far
	BytesOut      uint64  `json:"bytes_out"`       // backend → client
}

type statusReply struct {
	Servers   []server `json:"servers"`
	Total     int      `json:"total"`
	Timestamp float64  `json:"timestamp"`
	*overview          // listeners, uptime, listener totals: only when API.Overview is set
}

func (a *API) status(w http.ResponseWriter, r *http.Request) {
	snap := a.Registry.Snapshot()
	reply := statusReply{Servers: make([]server, 0, len(snap)), Total: len(snap), Timestamp: unixSeconds(time.Now())}
	for _, s := range snap {
		reply.Servers = append(reply.Servers, server{
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
		})
	}
	reply.overview = a.Overview.fields()
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
