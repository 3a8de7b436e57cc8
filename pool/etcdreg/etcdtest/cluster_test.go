package etcdtest

import (
	"errors"
	"syscall"
	"testing"
	"time"
)

// Stopping the leader with SIGTERM waits for its process to exit; the others elect a new
// leader; the stopped member restarts with its data and rejoins. Kill does the same at once.
func TestStopKillAndRestartMembers(t *testing.T) {
	c := Start(t, 3)
	leader := c.Leader(t)
	nd := c.Nodes[leader]
	pid := nd.PID()
	start := time.Now()
	nd.Stop(t)
	t.Logf("the leader exited %v after SIGTERM", time.Since(start))
	if nd.Running() || nd.PID() != 0 {
		t.Fatal("Stop returned while the member still runs")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("process %d after Stop: %v, want no such process", pid, err)
	}
	if next := c.Leader(t); next == leader {
		t.Fatal("the stopped member still leads")
	}
	nd.Start(t)
	c.WaitHealthy(t)
	if !nd.Healthy() || nd.PID() == pid {
		t.Fatal("the restarted member is not a healthy new process")
	}

	follower := c.Nodes[(c.Leader(t)+1)%3]
	follower.Kill(t)
	if follower.Running() {
		t.Fatal("Kill returned while the member still runs")
	}
	c.StartAll(t)
	for _, n := range c.Nodes {
		if !n.Healthy() {
			t.Fatalf("member %s unhealthy after StartAll", n.Name)
		}
	}
}
