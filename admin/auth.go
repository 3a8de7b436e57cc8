package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// class is how much protection an endpoint needs.
type class int

const (
	classRead     class = iota // status, metrics, dashboard, unknown paths: token with TokenRead
	classMutating              // changes the registry: token whenever one is configured
	classOpen                  // liveness probes: never a token
)

// mutatingPaths change the registry; every one of them goes through parseRequest and authorize.
var mutatingPaths = map[string]bool{
	"/upstream/add":     true,
	"/upstream/remove":  true,
	"/upstream/drain":   true,
	"/upstream/undrain": true,
}

// classify tells what a request needs from the route the mux will really serve it with, so
// that an odd spelling of a path (escaped, unclean, with a trailing slash) cannot pass for a
// read: the mux either redirects it (no handler runs) or routes it to a pattern seen here.
func classify(mux *http.ServeMux, r *http.Request) class {
	_, pattern := mux.Handler(r)
	if _, rest, ok := strings.Cut(pattern, " "); ok {
		pattern = rest // "GET /metrics": drop the method
	}
	if i := strings.IndexByte(pattern, '/'); i > 0 {
		pattern = pattern[i:] // "host/path": drop the host
	}
	switch {
	case mutatingPaths[pattern]:
		return classMutating
	case pattern == "/healthz":
		return classOpen
	}
	return classRead
}

// guard is the one middleware around every route: it asks for the token where the class of
// the route needs it, before anything else is looked at (401 comes first).
func (a *API) guard(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.needsToken(classify(mux, r)) && !a.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fulcrum admin"`)
			writeError(w, http.StatusUnauthorized, "a valid Authorization: Bearer token is required")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (a *API) needsToken(c class) bool {
	if a.Security.Token == "" {
		return false
	}
	return c == classMutating || c == classRead && a.Security.TokenRead
}

// authorized compares the bearer token in constant time. Both sides are hashed first so that
// neither the comparison nor its length check says anything about the token's length.
func (a *API) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	want := sha256.Sum256([]byte(a.Security.Token))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}
