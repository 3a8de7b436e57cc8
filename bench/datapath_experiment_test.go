package bench

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/pool"
)

// This file is an experiment behind NOTES-issue-3.md, not a test of the harness: it runs the
// scenarios through in-process fulcrums that differ only in their listener.DataPath, to see
// what splice costs on small messages. Run it with
//
//	FULCRUM_DATAPATH_EXPERIMENT=1 go test -run TestDataPathExperiment -v ./bench

// copyPath moves bytes through a user-space buffer per direction (read/write), never splice.
type copyPath struct{ bufSize int }

func (p copyPath) Join(client, backend *net.TCPConn, m listener.Meter) listener.Traffic {
	return joinWith(client, backend, func(dst, src *net.TCPConn) (int64, error) {
		return io.CopyBuffer(writerOnly{dst}, readerOnly{src}, make([]byte, p.bufSize))
	})
}

// autoPath is splice-auto: it waits for data without holding a buffer or a pipe, reads it
// into a pooled buffer, and switches to splice only once a read fills the buffer (bulk).
type autoPath struct{}

var autoBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

func (autoPath) Join(client, backend *net.TCPConn, m listener.Meter) listener.Traffic {
	return joinWith(client, backend, autoCopy)
}

func autoCopy(dst, src *net.TCPConn) (int64, error) {
	rc, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	var total int64
	for {
		if err := waitReadable(rc); err != nil {
			return total, err
		}
		bp := autoBufs.Get().(*[]byte)
		n, rerr := src.Read(*bp)
		if n > 0 {
			if _, werr := dst.Write((*bp)[:n]); werr != nil {
				autoBufs.Put(bp)
				return total, werr
			}
			total += int64(n)
		}
		full := n == len(*bp)
		autoBufs.Put(bp)
		if errors.Is(rerr, io.EOF) {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
		if full { // bulk: let the kernel move it until the source pauses or ends
			lr := io.LimitedReader{R: src, N: 1 << 20}
			sn, serr := dst.ReadFrom(&lr)
			total += sn
			if serr != nil {
				return total, serr
			}
			if lr.N > 0 {
				return total, nil // EOF inside the splice
			}
		}
	}
}

// waitReadable parks until src has data or EOF, holding nothing: MSG_PEEK does not consume.
func waitReadable(rc syscall.RawConn) error {
	var b [1]byte
	var perr error
	err := rc.Read(func(fd uintptr) bool {
		_, _, e := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if e == syscall.EAGAIN {
			return false
		}
		if e != syscall.EINTR {
			perr = e
		}
		return e != syscall.EINTR
	})
	if err != nil {
		return err
	}
	if perr != nil {
		return perr
	}
	return nil
}

// readPath is autoPath without the peek: it reads straight from the descriptor inside
// RawConn.Read, taking a pooled buffer only for the read and giving it back on EAGAIN, so an
// idle direction parks holding neither a buffer nor a pipe, at one syscall per message.
type readPath struct{}

func (readPath) Join(client, backend *net.TCPConn, m listener.Meter) listener.Traffic {
	return joinWith(client, backend, readCopy)
}

func readCopy(dst, src *net.TCPConn) (int64, error) {
	rc, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	var total int64
	for {
		bp, n, rerr := readPooled(rc)
		if n > 0 {
			_, werr := dst.Write((*bp)[:n])
			if werr != nil {
				autoBufs.Put(bp)
				return total, werr
			}
			total += int64(n)
		}
		full := bp != nil && n == len(*bp)
		if bp != nil {
			autoBufs.Put(bp)
		}
		switch {
		case rerr != nil:
			return total, rerr
		case n == 0:
			return total, nil // EOF
		case full:
			lr := io.LimitedReader{R: src, N: 1 << 20}
			sn, serr := dst.ReadFrom(&lr)
			total += sn
			if serr != nil || lr.N > 0 {
				return total, serr
			}
		}
	}
}

// readPooled reads once into a pooled buffer, parking (without the buffer) until data comes.
func readPooled(rc syscall.RawConn) (bp *[]byte, n int, err error) {
	var serr error
	rerr := rc.Read(func(fd uintptr) bool {
		if bp == nil {
			bp = autoBufs.Get().(*[]byte)
		}
		for {
			n, serr = syscall.Read(int(fd), *bp)
			if serr != syscall.EINTR {
				break
			}
		}
		if serr == syscall.EAGAIN {
			autoBufs.Put(bp)
			bp = nil
			return false
		}
		return true
	})
	n = max(n, 0)
	if rerr != nil {
		return bp, n, rerr
	}
	return bp, n, serr
}

type writerOnly struct{ io.Writer }

// joinWith runs copy in both directions with half-close, like listener.Splice.
func joinWith(client, backend *net.TCPConn, copy func(dst, src *net.TCPConn) (int64, error)) listener.Traffic {
	var wg sync.WaitGroup
	var down int64
	var derr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		down, derr = copy(client, backend)
		finish(client, backend, derr)
	}()
	up, uerr := copy(backend, client)
	finish(backend, client, uerr)
	wg.Wait()
	client.Close()
	backend.Close()
	return listener.Traffic{Up: up, Down: down, Err: errors.Join(uerr, derr)}
}

func finish(dst, src *net.TCPConn, err error) {
	if err == nil {
		dst.CloseWrite()
		return
	}
	dst.Close()
	src.Close()
}

func TestDataPathExperiment(t *testing.T) {
	if os.Getenv("FULCRUM_DATAPATH_EXPERIMENT") == "" {
		t.Skip("set FULCRUM_DATAPATH_EXPERIMENT=1 to run")
	}
	paths := []struct {
		name string
		dp   listener.DataPath
	}{{"splice", listener.Splice{}}, {"copy32k", copyPath{32 << 10}}, {"auto", autoPath{}}, {"read", readPath{}}}
	bs := startBackends(t, 4)
	cfg := Config{Duration: 3 * time.Second, Conns: 8, Hold: 2000}
	for round := 1; round <= 3; round++ {
		for _, sc := range []string{Throughput, Connrate, Latency, Idle} {
			for _, p := range paths {
				r := &Runner{Backends: bs, Target: startFulcrumWith(t, bs, p.dp, p.name), Config: cfg, Round: round}
				res, err := r.Run(context.Background(), sc)
				if err != nil {
					t.Fatal(err)
				}
				t.Log(res.Text())
			}
		}
	}
}

func startFulcrumWith(t *testing.T, bs Backends, dp listener.DataPath, name string) Target {
	t.Helper()
	p := &pool.Pool{Logger: quietLogger()}
	for _, a := range bs.Addrs() {
		addr, _ := pool.ParseAddress(a)
		p.RegisterStatic(addr, 1)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &listener.Server{Picker: p, Logger: quietLogger(), DataPath: dp}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return Target{Name: name, Addr: ln.Addr().String(), PID: os.Getpid()}
}
