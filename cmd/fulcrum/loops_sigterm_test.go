package main

import (
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestLoopsExitOnSIGTERM: fulcrum exits promptly on SIGTERM while its event loop is busy with
// small messages and while it is idle, with a P to spare (GOMAXPROCS 2) and without one
// (GOMAXPROCS 1). The listener package's TestHeldWaitExitsOnSIGTERM checks the same with a
// loop that holds its P in waits only a signal can end (held waits, off by default).
func TestLoopsExitOnSIGTERM(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the event loops are Linux only")
	}
	be := startBackend(t, echoHandler)
	for _, procs := range []string{"2", "1"} {
		for _, busy := range []bool{true, false} {
			name := "GOMAXPROCS " + procs + " idle"
			if busy {
				name = "GOMAXPROCS " + procs + " busy"
			}
			t.Run(name, func(t *testing.T) {
				b := startBalancerVia(t, []string{"env", "GOMAXPROCS=" + procs},
					"--backend", be.Addr(), "--drain-timeout", "1s")
				load := startEchoLoad(t, b.listen, 8)
				if !busy {
					if err := load.end(); err != nil {
						t.Fatal(err)
					}
				}
				if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				eventually(t, time.Minute, "fulcrum exits after SIGTERM", b.exited)
				if b.err != nil {
					t.Errorf("fulcrum after SIGTERM: %v", b.err)
				}
				load.end() // the shutdown ended its connections: errors expected
			})
		}
	}
}

// echoLoad is a small-message load: connections that each send 64 bytes and read them back
// over and over, until end.
type echoLoad struct {
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
	mu    sync.Mutex
	trips int
	err   error // the first error of a connection
}

// startEchoLoad starts conns connections to addr and returns once each made a round trip.
func startEchoLoad(t *testing.T, addr string, conns int) *echoLoad {
	t.Helper()
	ld := &echoLoad{stop: make(chan struct{})}
	t.Cleanup(func() { ld.end() })
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		ld.wg.Add(1)
		go ld.run(c)
	}
	eventually(t, time.Minute, "the echo load running", func() bool {
		ld.mu.Lock()
		defer ld.mu.Unlock()
		return ld.trips >= 10*conns || ld.err != nil
	})
	ld.mu.Lock()
	err := ld.err
	ld.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	return ld
}

// run is one connection's round trips; it ends at stop or on the first error.
func (ld *echoLoad) run(c net.Conn) {
	defer ld.wg.Done()
	defer c.Close()
	msg, got := make([]byte, 64), make([]byte, 64)
	for {
		select {
		case <-ld.stop:
			return
		default:
		}
		c.SetDeadline(time.Now().Add(time.Minute))
		_, err := c.Write(msg)
		if err == nil {
			_, err = io.ReadFull(c, got)
		}
		ld.mu.Lock()
		if err != nil && ld.err == nil {
			ld.err = err
		}
		ld.trips++
		ld.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// end stops the load, waits for its goroutines and returns the first error. Safe to call twice.
func (ld *echoLoad) end() error {
	ld.once.Do(func() { close(ld.stop) })
	ld.wg.Wait()
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.err
}
