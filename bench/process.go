package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Process is a balancer the bench started as a child process.
type Process struct {
	Name   string
	cmd    *exec.Cmd
	stderr *bytes.Buffer // kept to explain a failed start
	exited chan struct{} // closed when the process has ended
	err    error         // how it ended; read after exited is closed
	once   sync.Once
}

// startProcess runs exe args; its output is kept in memory (bounded by the process's short life).
func startProcess(name, exe string, args ...string) (*Process, error) {
	return startCmd(name, exec.Command(exe, args...))
}

// startCmd starts cmd as a child that dies with the bench, keeping its output in memory.
func startCmd(name string, cmd *exec.Cmd) (*Process, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	dieWithParent(cmd) // never outlive the bench
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	p := &Process{Name: name, cmd: cmd, stderr: &out, exited: make(chan struct{})}
	go func() { // reapChild: ends when the child exits
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// PID is the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Stop asks the process to end with SIGTERM (a fast shutdown for fulcrum, HAProxy and nginx
// alike) and kills it after 10 s. Calling it twice is safe.
func (p *Process) Stop() error {
	p.once.Do(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return nil
}

// waitReady polls until ready returns nil, the process exits, or 20 s pass.
func (p *Process) waitReady(ready func() error) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("bench: %s exited at start (%v): %s", p.Name, p.err, lastLines(p.stderr.String(), 10))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return fmt.Errorf("bench: %s not ready after 20s: %w", p.Name, err)
		}
	}
}

func lastLines(s string, n int) string {
	lines := bytes.Split(bytes.TrimSpace([]byte(s)), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// canDial is a readiness check: the port accepts connections.
func canDial(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// startServer runs the command cmdFor builds for a free loopback address, retrying on a fresh
// port when the first is taken (freePort's port may be taken by someone else before the
// server binds it), and waits until ready(addr) holds. The peers (HAProxy, nginx) and the
// real servers all start through it.
func startServer(name string, cmdFor func(listen string) (*exec.Cmd, error), ready func(addr string) func() error) (*Process, string, error) {
	var err error
	for range 3 {
		var port int
		if port, err = freePort(); err != nil {
			return nil, "", err
		}
		listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		var cmd *exec.Cmd
		if cmd, err = cmdFor(listen); err != nil {
			return nil, "", err
		}
		var p *Process
		if p, err = startCmd(name, cmd); err != nil {
			return nil, "", err
		}
		if err = p.waitReady(ready(listen)); err == nil {
			return p, listen, nil
		}
		p.Stop()
	}
	return nil, "", err
}

// retryPorts starts a peer up to three times: a free port found by freePort may be taken
// by someone else before the peer binds it.
func retryPorts(start func() (*Process, Target, error)) (*Process, Target, error) {
	var err error
	for range 3 {
		var p *Process
		var t Target
		if p, t, err = start(); err == nil {
			return p, t, nil
		}
	}
	return nil, Target{}, err
}

// StartFulcrum runs `exe serve` on free loopback ports in front of backends, with extra
// arguments appended (a CPU profile, a policy), and waits until its admin API answers.
func StartFulcrum(exe string, backends []string, extra ...string) (*Process, Target, error) {
	return retryPorts(func() (*Process, Target, error) {
		lp, err := freePort()
		if err != nil {
			return nil, Target{}, err
		}
		ap, err := freePort()
		if err != nil {
			return nil, Target{}, err
		}
		listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(lp))
		admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(ap))
		args := []string{"serve", "--listen", listen, "--admin", admin, "--log-level", "warn", "--drain-timeout", "2s"}
		for _, b := range backends {
			args = append(args, "--backend", b)
		}
		p, err := startProcess("fulcrum", exe, append(args, extra...)...)
		if err != nil {
			return nil, Target{}, err
		}
		if err := p.waitReady(httpOK("http://" + admin + "/healthz")); err != nil {
			p.Stop()
			return nil, Target{}, err
		}
		return p, Target{Name: "fulcrum", Addr: listen, PID: p.PID(), Admin: admin, Counts: FulcrumCounts(admin)}, nil
	})
}

func httpOK(url string) func() error {
	return func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	}
}

// FulcrumCounts reads fulcrum's per-backend conn_count from its admin API at addr.
func FulcrumCounts(admin string) func() (map[string]int64, error) {
	return func() (map[string]int64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/upstream/status", nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("fulcrum status: %w", err)
		}
		defer resp.Body.Close()
		var st struct {
			Servers []struct {
				Host      string `json:"host"`
				Port      int    `json:"port"`
				ConnCount int64  `json:"conn_count"`
			} `json:"servers"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return nil, fmt.Errorf("fulcrum status: %w", err)
		}
		if len(st.Servers) == 0 {
			return nil, errors.New("fulcrum status: no servers")
		}
		out := make(map[string]int64, len(st.Servers))
		for _, s := range st.Servers {
			out[net.JoinHostPort(s.Host, strconv.Itoa(s.Port))] = s.ConnCount
		}
		return out, nil
	}
}
