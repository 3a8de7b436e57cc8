package bench

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// peerMaxConn is the connection limit written into HAProxy's and nginx's configuration: as
// many as the hold scenarios can use under the open-file limit, with room to spare
// (HAProxy refuses to start when 2 × maxconn + 2 × maxpipes + a few exceed the limit).
func peerMaxConn() int {
	return max(int(ownFileLimit())-headroom/2-2*haproxyPipes, 1024) / 2
}

// haproxyPipes caps HAProxy's splice pipes (its default, maxconn/4, would not fit the
// limit); the bulk loads use a few dozen at most. Kept small so that HAProxy's maxconn still
// fits the held connections the other peers get (9,800 under a 20,000-file limit).
const haproxyPipes = 64

// lookPeer finds a peer's binary in PATH or /usr/sbin (not in every user's PATH).
func lookPeer(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed (apt-get install -y %s)", name, installHint(name))
}

func installHint(name string) string {
	switch name {
	case "nginx":
		return "nginx libnginx-mod-stream"
	case "redis-benchmark":
		return "redis-tools"
	case "pgbench":
		return "postgresql-client"
	}
	return name
}

// HAProxyConfig is HAProxy's configuration for the bench: TCP mode, leastconn, splice where it
// pays (splice-auto), one thread per core, and a stats socket for its per-server counts.
func HAProxyConfig(listen, statsSock string, backends []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
    nbthread %d
    maxconn %d
    maxpipes %d
    stats socket %s mode 600 level admin

defaults
    mode tcp
    option splice-auto
    timeout connect 5s
    timeout client 10m
    timeout server 10m

frontend bench
    bind %s
    maxconn %d
    default_backend bench_backends

backend bench_backends
    balance leastconn
`, runtime.NumCPU(), peerMaxConn(), haproxyPipes, statsSock, listen, peerMaxConn())
	for i, a := range backends {
		fmt.Fprintf(&b, "    server b%d %s\n", i, a)
	}
	return b.String()
}

// StartHAProxy writes HAProxy's configuration into dir and runs it in front of backends.
func StartHAProxy(dir string, backends []string) (*Process, Target, error) {
	exe, err := lookPeer("haproxy")
	if err != nil {
		return nil, Target{}, err
	}
	sock := filepath.Join(dir, "haproxy.sock")
	p, listen, err := startServer("haproxy", func(listen string) (*exec.Cmd, error) {
		cfg := filepath.Join(dir, "haproxy.cfg")
		if err := writeConfig("haproxy", cfg, HAProxyConfig(listen, sock, backends)); err != nil {
			return nil, err
		}
		return exec.Command(exe, "-db", "-f", cfg), nil
	}, canDial)
	if err != nil {
		return nil, Target{}, err
	}
	return p, Target{Name: "haproxy", Addr: listen, PID: p.PID(), Counts: haproxyCounts(sock, backends)}, nil
}

// haproxyCounts reads the current sessions (scur) of every server from HAProxy's stats socket.
func haproxyCounts(sock string, backends []string) func() (map[string]int64, error) {
	return func() (map[string]int64, error) {
		c, err := net.DialTimeout("unix", sock, 5*time.Second)
		if err != nil {
			return nil, fmt.Errorf("haproxy stats: %w", err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "show stat\n"); err != nil {
			return nil, fmt.Errorf("haproxy stats: %w", err)
		}
		return parseHAProxyStat(c, backends)
	}
}

// parseHAProxyStat maps "show stat" CSV rows of servers b0, b1, ... to backends[i] → scur.
func parseHAProxyStat(r io.Reader, backends []string) (map[string]int64, error) {
	br := bufio.NewReader(r)
	head, err := br.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("haproxy stats: %w", err)
	}
	cols := strings.Split(strings.TrimPrefix(strings.TrimSpace(head), "# "), ",")
	sv, scur := indexOf(cols, "svname"), indexOf(cols, "scur")
	if sv < 0 || scur < 0 {
		return nil, errors.New("haproxy stats: no svname or scur column")
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	out := make(map[string]int64, len(backends))
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("haproxy stats: %w", err)
		}
		if len(rec) <= max(sv, scur) || !strings.HasPrefix(rec[sv], "b") {
			continue
		}
		i, err := strconv.Atoi(rec[sv][1:])
		if err != nil || i < 0 || i >= len(backends) {
			continue
		}
		n, _ := strconv.ParseInt(rec[scur], 10, 64)
		out[backends[i]] = n
	}
	return out, nil
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// nginxStreamModule is the load_module line nginx needs for the stream module: Debian builds
// it as a dynamic module (libnginx-mod-stream); other builds have it inside. It errors when
// the module is neither.
func nginxStreamModule(exe string) (string, error) {
	for _, p := range []string{"/usr/lib/nginx/modules/ngx_stream_module.so", "/usr/share/nginx/modules/ngx_stream_module.so", "/usr/lib64/nginx/modules/ngx_stream_module.so"} {
		if _, err := os.Stat(p); err == nil {
			return "load_module " + p + ";\n", nil
		}
	}
	out, _ := exec.Command(exe, "-V").CombinedOutput()
	if strings.Contains(string(out), "--with-stream ") || strings.HasSuffix(strings.TrimSpace(string(out)), "--with-stream") {
		return "", nil
	}
	return "", errors.New("nginx has no stream module (apt-get install -y libnginx-mod-stream)")
}

// NginxConfig is nginx's configuration for the bench: a stream proxy with least_conn (over a
// shared zone so that every worker sees every count) and one worker per core.
func NginxConfig(loadModule, dir, listen string, backends []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `%sworker_processes %d;
worker_rlimit_nofile %d;
daemon off;
pid %s;
error_log %s warn;

events {
    worker_connections %d;
}

stream {
    upstream bench_backends {
        least_conn;
        zone bench_backends 256k;
`, loadModule, runtime.NumCPU(), ownFileLimit(), filepath.Join(dir, "nginx.pid"),
		filepath.Join(dir, "nginx-error.log"), int(ownFileLimit())-headroom/2)
	for _, a := range backends {
		fmt.Fprintf(&b, "        server %s;\n", a)
	}
	fmt.Fprintf(&b, `    }
    server {
        listen %s;
        proxy_pass bench_backends;
        proxy_connect_timeout 5s;
        proxy_timeout 10m;
        proxy_half_close on;
    }
}
`, listen)
	return b.String()
}

// StartNginx writes nginx's configuration into dir and runs it in front of backends.
func StartNginx(dir string, backends []string) (*Process, Target, error) {
	exe, err := lookPeer("nginx")
	if err != nil {
		return nil, Target{}, err
	}
	mod, err := nginxStreamModule(exe)
	if err != nil {
		return nil, Target{}, err
	}
	p, listen, err := startServer("nginx", func(listen string) (*exec.Cmd, error) {
		return nginxCommand(exe, dir, "nginx-error.log", NginxConfig(mod, dir, listen, backends))
	}, canDial)
	if err != nil {
		return nil, Target{}, err
	}
	// nginx keeps no per-upstream counts in its open-source build: Counts stays nil.
	return p, Target{Name: "nginx", Addr: listen, PID: p.PID()}, nil
}

// nginxCommand writes config as dir/nginx.conf and returns the command that runs nginx with it
// in the foreground, logging to dir/errorLog.
func nginxCommand(exe, dir, errorLog, config string) (*exec.Cmd, error) {
	cfg := filepath.Join(dir, "nginx.conf")
	if err := writeConfig("nginx", cfg, config); err != nil {
		return nil, err
	}
	return exec.Command(exe, "-p", dir, "-c", cfg, "-e", filepath.Join(dir, errorLog)), nil
}

// writeConfig writes a peer's or server's configuration file.
func writeConfig(name, path, config string) error {
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return fmt.Errorf("bench: write %s config: %w", name, err)
	}
	return nil
}
