package admin

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"time"

	"github.com/fulcrumlb/fulcrum/listener"
)

// ui is the status page: plain HTML, CSS and a small script that polls /upstream/status.
// Nothing in it refers to another host, and the Content-Security-Policy says so to the browser.
//
//go:embed ui
var ui embed.FS

// Overview is what the status page shows besides the backends. Every field is optional; its
// zero value leaves the matching status field at its zero.
type Overview struct {
	Listen  []string        // the balanced listeners' addresses
	Admin   string          // the admin listener's address
	Version string          // fulcrum's version; "" means the build's (status "version")
	Started time.Time       // when serving began; zero reports no uptime
	Stats   *listener.Stats // the listener's running totals; nil leaves them out
	// DataPlane is how the listener runs its connections ("epoll", "sockmap" or
	// "goroutine"); "" leaves it out.
	DataPlane string
	// Sockmap reads the sockmap plane's counts (listener.EventLoops.SockmapStats), for the
	// status's "sockmap" object and the fulcrum_sockmap_* metrics (sockmap.go); nil, as on
	// every other plane, leaves them out.
	Sockmap func() listener.SockmapStats
}

// overview is the JSON form of an Overview: extra top-level fields of /upstream/status.
type overview struct {
	Listen        []string `json:"listen"`
	Admin         string   `json:"admin"`
	StartedTime   float64  `json:"started_time,omitempty"`
	UptimeSeconds float64  `json:"uptime_seconds"`
	DataPlane     string   `json:"data_plane,omitempty"`
	// Sockmap is where the live connections are, on the sockmap plane only (sockmap.go).
	Sockmap *sockmapCounts `json:"sockmap,omitempty"`
	*listenerTotals
}

type listenerTotals struct {
	Accepted   uint64 `json:"connections_accepted"`
	Rejected   uint64 `json:"connections_rejected"` // closed at once: no live backend
	Failed     uint64 `json:"connections_failed"`   // closed: every dial failed
	DialErrors uint64 `json:"dial_errors"`          // failed dials, retries included
	Full       uint64 `json:"connections_full"`     // closed: every backend at its limit
}

// version is the version set in o; "" when o is nil or sets none.
func (o *Overview) version() string {
	if o == nil {
		return ""
	}
	return o.Version
}

func (o *Overview) fields() *overview {
	if o == nil {
		return nil
	}
	f := &overview{Listen: o.Listen, Admin: o.Admin, DataPlane: o.DataPlane}
	if f.Listen == nil {
		f.Listen = []string{}
	}
	if !o.Started.IsZero() {
		f.StartedTime = unixSeconds(o.Started)
		f.UptimeSeconds = time.Since(o.Started).Seconds()
	}
	if s := o.Stats; s != nil {
		f.listenerTotals = &listenerTotals{
			Accepted:   s.Accepted.Load(),
			Rejected:   s.Rejected.Load(),
			Failed:     s.Failed.Load(),
			DialErrors: s.DialErrors.Load(),
			Full:       s.QueueDrops.Load(),
		}
	}
	return f
}

// operatingRoutes adds what operators look at: the status page (GET /, its files under /ui/)
// and the Prometheus metrics (GET /metrics).
func (a *API) operatingRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/metrics", a.only(a.metrics))
	mux.HandleFunc("/{$}", pageOnly(servePageFile("ui/index.html")))
	mux.HandleFunc("/ui/{file}", pageOnly(func(w http.ResponseWriter, r *http.Request) {
		servePageFile("ui/"+r.PathValue("file"))(w, r)
	}))
}

func (a *API) metrics(w http.ResponseWriter, r *http.Request) {
	if a.Metrics == nil {
		writeError(w, http.StatusNotFound, "metrics are turned off (--metrics=false)")
		return
	}
	a.Metrics.setRegistry(a.registryState())
	a.Metrics.setSockmap(a.Overview.sockmapSource())
	a.Metrics.ServeHTTP(w, r)
}

// pageOnly admits GET and HEAD, as for any static file.
func pageOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
			return
		}
		h(w, r)
	}
}

// servePageFile serves one embedded file, or the API's JSON 404 for a name that is not one.
func servePageFile(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := fs.ReadFile(ui, name) // a directory or a missing name fails alike
		if err != nil {
			writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
			return
		}
		h := w.Header()
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(body))
	}
}
