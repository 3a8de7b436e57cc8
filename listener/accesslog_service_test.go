package listener

import (
	"net"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/pool"
)

// startServiceServer is startPPServer for a Server of the named service.
func startServiceServer(t *testing.T, service string, obs Observer, picker pool.Picker) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveUntilCleanup(t, ln, &Server{Service: service, Picker: picker, Observer: obs, ConnectTimeout: 10 * time.Second, Logger: quiet, DataPlane: planeOf(t)})
}

// Every access log line names its service: a proxied connection's from its Server, a
// rejected one's from ForService (a rejection carries no ConnInfo); "default" when unnamed.
func TestAccessLogNamesService(t *testing.T) { eachPlane(t, testAccessLogNamesService) }

func testAccessLogNamesService(t *testing.T) {
	t.Run("proxied", func(t *testing.T) {
		be := startPPBackend(t, "tcp4", "")
		var out lockedBuffer
		addr := startServiceServer(t, "web", NewAccessLog(&out), poolOf(t, be))
		ppRoundTrip(t, dialTCP(t, addr), nil, []byte("hi"))
		if l := out.waitLines(t, 1)[0]; l["service"] != "web" {
			t.Errorf("service = %v, want web (line %v)", l["service"], l)
		}
	})
	t.Run("rejected", func(t *testing.T) {
		var out lockedBuffer
		addr := startServiceServer(t, "web", NewAccessLog(&out).ForService("web"), poolOf(t))
		dialTCP(t, addr)
		if l := out.waitLines(t, 1)[0]; l["service"] != "web" {
			t.Errorf("service = %v, want web (line %v)", l["service"], l)
		}
	})
	t.Run("default", func(t *testing.T) {
		var out lockedBuffer
		addr := startServiceServer(t, "", NewAccessLog(&out), poolOf(t))
		dialTCP(t, addr)
		if l := out.waitLines(t, 1)[0]; l["service"] != pool.DefaultService {
			t.Errorf("service = %v, want %s (line %v)", l["service"], pool.DefaultService, l)
		}
	})
}
