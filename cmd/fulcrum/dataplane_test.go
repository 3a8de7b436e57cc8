package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// A bad --data-plane or --loops stops serve with an error that says what is allowed; the
// binary exits non-zero with it.
func TestDataPlaneFlagErrors(t *testing.T) {
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"--data-plane", "io_uring"}, []string{"--data-plane", "epoll", "goroutine"}},
		{[]string{"--loops", "-1"}, []string{"--loops"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			argv := append([]string{"fulcrum", "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"}, tc.args...)
			err := newApp(testUpgrades).Run(argv)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("err %v, want one naming %s", err, w)
				}
			}
		})
	}
	t.Run("exit status", func(t *testing.T) {
		needBinary(t)
		out, err := exec.Command(fulcrumBin, "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--data-plane", "bogus").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "epoll") || !strings.Contains(string(out), "goroutine") {
			t.Fatalf("exit %v, output %q: want non-zero naming epoll and goroutine", err, out)
		}
	})
}

// The startup line and /upstream/status say which data plane runs.
func TestDataPlaneNamedInLogAndStatus(t *testing.T) { eachPlane(t, testDataPlaneNamedInLogAndStatus) }

func testDataPlaneNamedInLogAndStatus(t *testing.T) {
	plane := planeArgs(t)[1]
	b := startBalancer(t)
	if !strings.Contains(b.log(), `"data_plane":"`+plane+`"`) {
		t.Errorf("startup log does not say data_plane=%s:\n%s", plane, b.log())
	}
	body, code, err := adminGet(b.admn, "/upstream/status")
	if err != nil || code != 200 {
		t.Fatalf("status: %d, %v", code, err)
	}
	var st struct {
		DataPlane string `json:"data_plane"`
	}
	if err := json.Unmarshal(body, &st); err != nil || st.DataPlane != plane {
		t.Fatalf("status data_plane %q (%v), want %q", st.DataPlane, err, plane)
	}
}
