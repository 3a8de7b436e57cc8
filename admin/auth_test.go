package admin

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestToken(t *testing.T) {
	const tok = "correct-horse-battery-staple"
	foreign := "/upstream/add?" + q("host", "198.51.100.7", "port", "8080")
	cases := []struct {
		name      string
		tokenRead bool
		r         req
		code      int
	}{
		{"add without token", false, req{target: "/upstream/add?port=8080"}, 401},
		{"add with wrong token", false, req{target: "/upstream/add?port=8080", token: "wrong"}, 401},
		{"add with token prefix", false, req{target: "/upstream/add?port=8080", token: tok[:10]}, 401},
		{"add with token", false, req{target: "/upstream/add?port=8080", token: tok}, 200},
		{"add with Basic scheme", false, req{target: "/upstream/add?port=8080", header: map[string]string{"Authorization": "Basic " + tok}}, 401},
		{"add with lower-case scheme", false, req{target: "/upstream/add?port=8080", header: map[string]string{"Authorization": "bearer " + tok}}, 200},
		{"own address still needs it", false, req{target: "/upstream/add?port=8080", remote: "203.0.113.5:1000"}, 401},
		{"foreign host from remote without token", false, req{target: foreign, remote: "203.0.113.5:1000"}, 401},
		{"foreign host from remote with token", false, req{target: foreign, remote: "203.0.113.5:1000", token: tok}, 200},
		{"remove without token", false, req{target: "/upstream/remove?port=8080"}, 401},
		{"remove with token, unknown", false, req{target: "/upstream/remove?port=8080", token: tok}, 404},
		{"401 before 400", false, req{target: "/upstream/add?port=abc"}, 401},
		{"400 with token", false, req{target: "/upstream/add?port=abc", token: tok}, 400},
		{"401 before 405", false, req{method: http.MethodPut, target: "/upstream/add?port=8080"}, 401},
		{"status open", false, req{target: "/upstream/status"}, 200},
		{"status with read token, none", true, req{target: "/upstream/status"}, 401},
		{"status with read token, wrong", true, req{target: "/upstream/status", token: "x"}, 401},
		{"status with read token, right", true, req{target: "/upstream/status", token: tok}, 200},
		{"healthz with read token", true, req{target: "/healthz"}, 200},
		{"unknown path", false, req{target: "/nope"}, 404},
		{"unknown path with read token", true, req{target: "/nope"}, 401},
		{"escaped add path", false, req{target: "/upstream/%61dd?port=8080"}, 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, _ := newAPI(t, func(s *Security) { s.Token, s.TokenRead = tok, c.tokenRead })
			reply := check(t, a, a.Handler(), c.r, c.code)
			if c.code == 401 && reply["error"] == nil {
				t.Errorf("401 without an error field: %v", reply)
			}
		})
	}
}

func TestTokenChallenge(t *testing.T) {
	a, _ := newAPI(t, func(s *Security) { s.Token = "t" })
	w := req{target: "/upstream/add?port=1"}.do(t, a.Handler())
	if got := w.Header().Get("WWW-Authenticate"); got == "" {
		t.Errorf("401 without WWW-Authenticate")
	}
}

// TestClassify covers the endpoints other files add (drain, metrics, dashboard): the class
// comes from the route the mux serves, however the path is spelled.
func TestClassify(t *testing.T) {
	mux := http.NewServeMux()
	ok := func(http.ResponseWriter, *http.Request) {}
	for _, p := range []string{"/upstream/add", "/upstream/remove", "/upstream/drain", "POST /upstream/undrain",
		"/upstream/status", "GET /metrics", "GET /{$}", "/healthz", "/"} {
		mux.HandleFunc(p, ok)
	}
	cases := []struct {
		method, path string
		want         class
	}{
		{"GET", "/upstream/add", classMutating},
		{"POST", "/upstream/remove", classMutating},
		{"GET", "/upstream/drain", classMutating},
		{"POST", "/upstream/undrain", classMutating},
		{"GET", "/upstream/%64rain", classMutating},
		{"GET", "/upstream/status", classRead},
		{"GET", "/metrics", classRead},
		{"GET", "/", classRead},
		{"GET", "/healthz", classOpen},
		{"GET", "/upstream/../upstream/add", classMutating}, // redirected: judged by the target
		{"GET", "/healthz/../upstream/add", classMutating},
		{"GET", "/other", classRead},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, "http://admin"+c.path, nil)
		if got := classify(mux, r); got != c.want {
			t.Errorf("%s %s: class %d, want %d", c.method, c.path, got, c.want)
		}
	}
}

// TestUncleanPathNotServed: a path the guard sees as a read is never served by a mutating
// handler; the mux redirects it and the registry stays as it was.
func TestUncleanPathNotServed(t *testing.T) {
	a, _ := newAPI(t, func(s *Security) { s.Token = "t" })
	for _, path := range []string{"/upstream/../upstream/add?port=8080", "/healthz/../upstream/add?port=8080", "//upstream/add?port=8080"} {
		w := req{target: path}.do(t, a.Handler())
		if w.Code == 200 {
			t.Errorf("%s served without a token", path)
		}
		if got := a.Registry.Snapshot(); len(got) != 0 {
			t.Fatalf("%s registered %v", path, got)
		}
	}
}
