package main

import (
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/fulcrumlb/fulcrum/internal/buildinfo"
	"github.com/fulcrumlb/fulcrum/pool"
)

// `fulcrum status` shows why a backend is down (its last error, with its age) in a LAST ERROR
// column, and no heartbeat age for a static backend even when it is down.
func TestClientStatusShowsWhyDown(t *testing.T) {
	ta := startTestAdmin(t)
	t.Setenv("FULCRUM_ADMIN_URL", ta.URL)
	if err := ta.pool.RegisterStatic(pool.Address{Host: "10.0.0.9", Port: 80}, 1); err != nil {
		t.Fatal(err)
	}
	b, err := ta.pool.Acquire(netip.MustParseAddr("192.0.2.1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ta.pool.ReportDial(b, fmt.Errorf("dial 10.0.0.9:80: %w", os.NewSyscallError("connect", syscall.ECONNREFUSED)))
	ta.pool.Release(b)
	if _, err := ta.pool.Register(pool.Address{Host: "10.0.0.5", Port: 8080}, 1); err != nil {
		t.Fatal(err)
	}
	out, err := opsRunCLI(t, "status")
	if err != nil {
		t.Fatal(err)
	}
	checkTable(t, out, [][]string{
		{"BACKEND", "STATE", "WEIGHT", "ACTIVE", "TOTAL", "HEARTBEAT AGE", "LAST ERROR"},
		{regexp.QuoteMeta("10.0.0.5:8080"), "up", "1", "0", "0", `\d+(\.\d)?m?s`, "-"},
		{regexp.QuoteMeta("10.0.0.9:80"), "down", "1", "0", "1", "-", `dial 10\.0\.0\.9:80: connect: connection refused \(\d+(\.\d)?m?s ago\)`},
	})
	// The footer names the balancer's build, as status reports it.
	build := buildinfo.Read()
	if want := fmt.Sprintf("\nserved by fulcrum %s (revision %s)\n", build.Version, build.RevisionText()); !strings.HasSuffix(out, want) {
		t.Errorf("status output does not end with %q:\n%s", want, out)
	}
}

// Under a shared registry (etcd) no heartbeat age is shown: the backend lives by its lease,
// renewed through any balancer, and an age here would only grow.
func TestStatusNoAgeUnderSharedRegistry(t *testing.T) {
	up := statusServer{Host: "10.0.0.5", Port: 80, Weight: 1, State: "up", LastHeartbeat: 1000}
	for _, tc := range []struct {
		registry, want string
	}{{"etcd", "-"}, {"memory", "1h0m0s"}, {"", "1h0m0s"}} {
		var out strings.Builder
		if err := printStatus(&out, statusReply{Servers: []statusServer{up}, Timestamp: 4600, Registry: tc.registry}); err != nil {
			t.Fatal(err)
		}
		checkTable(t, out.String(), [][]string{
			{"BACKEND", "STATE", "WEIGHT", "ACTIVE", "TOTAL", "HEARTBEAT AGE"},
			{regexp.QuoteMeta("10.0.0.5:80"), "up", "1", "0", "0", regexp.QuoteMeta(tc.want)},
		})
	}
}
