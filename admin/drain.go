package admin

import (
	"net/http"
)

// drain stops new connections to a backend until undrain; established ones run on and
// heartbeats keep it registered (a rolling upgrade).
func (a *API) drain(w http.ResponseWriter, r *http.Request) {
	a.setDraining(w, r, true)
}

// undrain lets a drained backend take new connections again.
func (a *API) undrain(w http.ResponseWriter, r *http.Request) {
	a.setDraining(w, r, false)
}

func (a *API) setDraining(w http.ResponseWriter, r *http.Request, on bool) {
	req, err := a.parseRequest(r, opDrain)
	if err == nil {
		_, err = a.authorize(&req)
	}
	if err != nil {
		a.writeRequestError(w, r, err)
		return
	}
	key, reg := req.addr.Key(), req.svc.Registry
	op, field := reg.Undrain, "undrained"
	if on {
		op, field = reg.Drain, "draining"
	}
	if err := registryError(key, op(key)); err != nil {
		a.writeRequestError(w, r, err)
		return
	}
	a.logger().Info("admin: "+field, "service", req.svc.Name, "backend", key)
	writeJSON(w, http.StatusOK, map[string]any{"success": true, field: key, "service": req.svc.Name})
}

// closeForced resets the established connections of a removed backend when the request says
// force=1, and reports how many it closed (-1: not forced, or no CloseBackend hook for the
// request's service).
func (a *API) closeForced(req *request) int {
	if !req.force || req.svc.CloseBackend == nil {
		return -1
	}
	key := req.addr.Key()
	n := req.svc.CloseBackend(key)
	a.logger().Info("admin: closed connections of removed backend", "service", req.svc.Name, "backend", key, "closed", n)
	return n
}
