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
	key := req.addr.Key()
	op, field := a.Registry.Undrain, "undrained"
	if on {
		op, field = a.Registry.Drain, "draining"
	}
	if err == nil {
		err = registryError(key, op(key))
	}
	if err != nil {
		a.writeRequestError(w, r, err)
		return
	}
	a.logger().Info("admin: "+field, "backend", key)
	writeJSON(w, http.StatusOK, map[string]any{"success": true, field: key})
}

// closeForced resets the established connections of a removed backend when the request says
// force=1, and reports how many it closed (-1: not forced, or no CloseBackend hook).
func (a *API) closeForced(force bool, key string) int {
	if !force || a.CloseBackend == nil {
		return -1
	}
	n := a.CloseBackend(key)
	a.logger().Info("admin: closed connections of removed backend", "backend", key, "closed", n)
	return n
}
