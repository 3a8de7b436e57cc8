// Package etcdtest runs a real etcd cluster of local processes for tests: each member is the
// etcd binary on loopback ports of its own, with its own data directory, started, stopped,
// killed and restarted by PID.
//
//	c := etcdtest.Start(t, 3)           // skips the test when etcd is not installed
//	cfg, _ := etcdreg.ParseURL(c.URL("/fulcrum"))
//	leader := c.Leader(t)
//	c.Nodes[leader].Kill(t)             // SIGKILL, waits for the exit
//	c.Nodes[leader].Start(t)            // same name, ports and data
//	c.WaitHealthy(t)
//
// Every member is killed and its directory removed when the test ends. It does not fake
// anything: failures are real processes going away.
package etcdtest

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Binary is the etcd server the cluster runs (Debian's etcd-server package installs it).
const Binary = "/usr/bin/etcd"

// Cluster is a set of etcd members that know each other.
type Cluster struct {
	Nodes []*Node
	TLS   *TLSFiles // the files a client needs (StartTLS); nil: plain connections
}

// Start starts an n-member cluster and waits until every member is healthy. It skips the test
// when Binary is missing, and kills every member when the test ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	return start(t, n, nil)
}

// StartTLS is Start with members that serve clients over TLS only and require a client
// certificate; Cluster.TLS names the files a client needs.
func StartTLS(t testing.TB, n int) *Cluster {
	t.Helper()
	files, err := NewTLSFiles(t.TempDir())
	if err != nil {
		t.Fatalf("etcd test certificates: %v", err)
	}
	return start(t, n, files)
}

func start(t testing.TB, n int, files *TLSFiles) *Cluster {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Skipf("etcd cluster tests need %s (apt-get install etcd-server): %v", Binary, err)
	}
	var clientTLS *tls.Config
	if files != nil {
		var err error
		if clientTLS, err = files.clientConfig(); err != nil {
			t.Fatalf("etcd test certificates: %v", err)
		}
	}
	ports := freePorts(t, 2*n)
	c := &Cluster{TLS: files}
	var initial []string
	for i := range n {
		nd := &Node{
			Name:     fmt.Sprintf("m%d", i),
			Endpoint: fmt.Sprintf("127.0.0.1:%d", ports[2*i]),
			peerURL:  fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			dir:      t.TempDir(),
			tls:      clientTLS,
		}
		c.Nodes = append(c.Nodes, nd)
		initial = append(initial, nd.Name+"="+nd.peerURL)
	}
	token := fmt.Sprintf("fulcrum-test-%d", ports[0])
	for _, nd := range c.Nodes {
		nd.args = nd.flags(strings.Join(initial, ","), token, files)
		nd.Start(t)
	}
	t.Cleanup(func() { c.cleanup(t) })
	c.WaitHealthy(t)
	return c
}

// Endpoints are the members' client addresses, "127.0.0.1:PORT" each.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.Nodes))
	for i, nd := range c.Nodes {
		eps[i] = nd.Endpoint
	}
	return eps
}

// URL is the registry address of the cluster under prefix, such as "/fulcrum".
func (c *Cluster) URL(prefix string) string {
	return "etcd://" + strings.Join(c.Endpoints(), ",") + prefix
}

// healthTimeout is how long a cluster may take to elect a leader after a start; generous,
// because the machine running the tests may be loaded.
const healthTimeout = 30 * time.Second

// WaitHealthy waits until every running member reports itself healthy (it has a leader and
// answers a read), and fails the test after healthTimeout.
func (c *Cluster) WaitHealthy(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(healthTimeout)
	for _, nd := range c.Nodes {
		if !nd.Running() {
			continue
		}
		for !nd.Healthy() {
			if time.Now().After(deadline) {
				t.Fatalf("etcd member %s not healthy after %s; log:\n%s", nd.Name, healthTimeout, nd.logTail())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// Leader returns the index of the leader among the running members, waiting for an election.
func (c *Cluster) Leader(t testing.TB) int {
	t.Helper()
	deadline := time.Now().Add(healthTimeout)
	for time.Now().Before(deadline) {
		if i := c.leader(); i >= 0 {
			return i
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no etcd leader after %s", healthTimeout)
	return -1
}

func (c *Cluster) leader() int {
	for _, nd := range c.Nodes {
		if !nd.Running() {
			continue
		}
		id, leader, err := nd.status()
		if err != nil || leader == 0 {
			continue
		}
		if id == leader {
			return c.index(nd)
		}
	}
	return -1
}

func (c *Cluster) index(nd *Node) int {
	for i, n := range c.Nodes {
		if n == nd {
			return i
		}
	}
	return -1
}

// StopAll stops every running member at once with SIGTERM (a leader can take seconds).
func (c *Cluster) StopAll(t testing.TB) {
	t.Helper()
	c.each(func(nd *Node) { nd.Stop(t) })
}

// StartAll starts every member that is not running, and waits for the cluster's health.
func (c *Cluster) StartAll(t testing.TB) {
	t.Helper()
	for _, nd := range c.Nodes {
		if !nd.Running() {
			nd.Start(t)
		}
	}
	c.WaitHealthy(t)
}

// cleanup kills every member: their data is thrown away, so a graceful stop buys nothing.
func (c *Cluster) cleanup(t testing.TB) {
	c.each(func(nd *Node) {
		nd.Kill(t)
		if t.Failed() {
			t.Logf("etcd member %s log:\n%s", nd.Name, nd.logTail())
		}
	})
}

// each runs f on every member in parallel and waits for all.
func (c *Cluster) each(f func(*Node)) {
	done := make(chan struct{}, len(c.Nodes))
	for _, nd := range c.Nodes {
		go func() {
			defer func() { done <- struct{}{} }()
			f(nd)
		}()
	}
	for range c.Nodes {
		<-done
	}
}

// freePorts reserves n distinct loopback ports, held open together so none repeats, then
// released for etcd to bind.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("reserve a port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// healthy asks the member's /health endpoint, which answers true when the member has a
// leader and can serve a read.
func healthy(endpoint string, conf *tls.Config) bool {
	scheme := "http"
	if conf != nil {
		scheme = "https"
	}
	hc := http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: conf}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(scheme + "://" + endpoint + "/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	return err == nil && resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"true"`)
}

// status returns the member's ID and the leader it knows (0: none).
func status(endpoint string, conf *tls.Config) (id, leader uint64, err error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, TLS: conf, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return 0, 0, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := cli.Status(ctx, endpoint)
	if err != nil {
		return 0, 0, err
	}
	return st.Header.MemberId, st.Leader, nil
}
