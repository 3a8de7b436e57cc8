package bench

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The real-client suites put a balancer in front of two real servers of one kind: nginx
// serving a small static file, redis-server, or PostgreSQL. Each server runs as a child
// process of the bench on a free loopback port, with its files in a directory of its own.

// smallFile is the static file the HTTP servers serve to wrk.
const smallFile = "small.txt"

// HTTPServerConfig is nginx's configuration for one HTTP server of the wrk suite: one
// worker, keep-alive for as many requests as a run makes, no access log.
func HTTPServerConfig(dir, listen string) string {
	return fmt.Sprintf(`worker_processes 1;
daemon off;
pid %s;
error_log %s warn;

events {
    worker_connections 1024;
}

http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 10m;
    default_type text/plain;
    server {
        listen %s;
        root %s;
    }
}
`, filepath.Join(dir, "nginx.pid"), filepath.Join(dir, "error.log"), listen, filepath.Join(dir, "www"))
}

// startHTTPServer runs one nginx HTTP server with its files in dir.
func startHTTPServer(dir string) (*Process, string, error) {
	exe, err := lookPeer("nginx")
	if err != nil {
		return nil, "", err
	}
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		return nil, "", fmt.Errorf("bench: http server dir: %w", err)
	}
	body := strings.Repeat("fulcrum bench: a small static file\n", 3) // 105 bytes
	if err := os.WriteFile(filepath.Join(www, smallFile), []byte(body), 0o644); err != nil {
		return nil, "", fmt.Errorf("bench: http server file: %w", err)
	}
	return startServer("nginx http", func(listen string) (*exec.Cmd, error) {
		return nginxCommand(exe, dir, "error.log", HTTPServerConfig(dir, listen))
	}, canDial)
}

// startRedis runs one redis-server with nothing persisted.
func startRedis(dir string) (*Process, string, error) {
	exe, err := lookPeer("redis-server")
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", fmt.Errorf("bench: redis dir: %w", err)
	}
	return startServer("redis-server", func(listen string) (*exec.Cmd, error) {
		host, port, _ := net.SplitHostPort(listen)
		return exec.Command(exe, "--bind", host, "--port", port, "--save", "", "--appendonly", "no",
			"--protected-mode", "no", "--daemonize", "no", "--dir", dir, "--logfile", ""), nil
	}, canDial)
}

// postgres finds PostgreSQL's server binaries (Debian keeps them out of PATH).
func postgresBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob(filepath.Join("/usr/lib/postgresql/*/bin", name))
	if len(matches) == 0 {
		return "", fmt.Errorf("%s is not installed (apt-get install -y postgresql)", name)
	}
	return matches[len(matches)-1], nil
}

// postgresUser is who runs PostgreSQL: it refuses to run as root, so root runs it as the
// "postgres" user the package creates; anyone else runs it as themselves (nil).
func postgresUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("bench: postgres refuses root and there is no postgres user: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("bench: postgres user: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// startPostgres creates a throw-away cluster in dir (trust authentication, no fsync) and runs
// it on a free loopback port.
func startPostgres(dir string) (*Process, string, error) {
	initdb, err := postgresBin("initdb")
	if err != nil {
		return nil, "", err
	}
	server, err := postgresBin("postgres")
	if err != nil {
		return nil, "", err
	}
	cred, err := postgresUser()
	if err != nil {
		return nil, "", err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", fmt.Errorf("bench: postgres dir: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, "", fmt.Errorf("bench: postgres dir: %w", err)
		}
	}
	init := asUser(exec.Command(initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"), cred)
	if out, err := init.CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("bench: initdb: %w: %s", err, lastLines(string(out), 5))
	}
	return startServer("postgres", func(listen string) (*exec.Cmd, error) {
		host, port, _ := net.SplitHostPort(listen)
		return asUser(exec.Command(server, "-D", data, "-p", port, "-k", dir, "-c", "listen_addresses="+host,
			"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200"), cred), nil
	}, postgresReady)
}

func asUser(cmd *exec.Cmd, cred *syscall.Credential) *exec.Cmd {
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	cmd.Dir = "/" // the postgres user may not enter the caller's directory
	return cmd
}

// postgresReady is PostgreSQL's readiness: pg_isready when installed (the port opens before
// the server accepts sessions), else the port accepting connections.
func postgresReady(addr string) func() error {
	exe, err := postgresBin("pg_isready")
	if err != nil {
		return canDial(addr)
	}
	host, port, _ := net.SplitHostPort(addr)
	return func() error {
		if out, err := exec.Command(exe, "-h", host, "-p", port, "-U", "postgres").CombinedOutput(); err != nil {
			return fmt.Errorf("pg_isready: %w: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
}
