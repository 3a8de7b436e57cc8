package admin

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/fulcrumlb/fulcrum/pool"
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
	req, err := a.parseTarget(r, false)
	if err != nil {
		writeParseError(w, err)
		return
	}
	d, ok := a.Registry.(pool.Drainer)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this registry cannot drain backends")
		return
	}
	key := req.addr.Key()
	op, field := d.Undrain, "undrained"
	if on {
		op, field = d.Drain, "draining"
	}
	if err := op(key); err != nil {
		if errors.Is(err, pool.ErrUnknownBackend) {
			writeError(w, http.StatusNotFound, "backend "+key+" is not registered")
			return
		}
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	a.logger().Info("admin: "+field, "backend", key)
	writeJSON(w, http.StatusOK, map[string]any{"success": true, field: key})
}

// parseForce reads remove's optional force parameter ("1", "true", "0", "false"...).
func parseForce(r *http.Request) (bool, error) {
	v := r.Form.Get("force")
	if v == "" {
		return false, nil
	}
	force, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("force %q: must be 1 or 0", v)
	}
	return force, nil
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
