package listener_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/listener/sniroute"
	"github.com/fulcrumlb/fulcrum/pool"
)

// BenchmarkSNIConnect is the connection rate through an SNI-routed address against a plain
// one, in the same run: each connection sends a Go client's hello, gets one byte back from
// the backend and closes. Compare the two ns/op (the hello read should add under 10%):
//
//	go test -run '^$' -bench BenchmarkSNIConnect -benchtime 3000x ./listener
func BenchmarkSNIConnect(b *testing.B) {
	hello := helloOf(b, "a.test")
	be := startBackend(b, func(c *net.TCPConn) {
		buf := make([]byte, len(hello))
		readFull(c, buf)
		c.Write([]byte{1})
		hold(c)
	})
	for _, routed := range []bool{false, true} {
		name := "plain"
		if routed {
			name = "sni"
		}
		b.Run(name, func(b *testing.B) {
			addr, stop := benchFront(b, be, routed)
			defer stop()
			reply := make([]byte, 1)
			b.ResetTimer()
			for range b.N {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				c.Write(hello)
				if _, err := c.Read(reply); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

// benchFront serves be behind a plain Server or, routed, an SNIRouter in front of it.
func benchFront(b *testing.B, be *backend, routed bool) (string, func()) {
	p := &pool.Pool{Logger: quiet}
	if _, err := p.Register(be.addr(), 0); err != nil {
		b.Fatal(err)
	}
	srv := &listener.Server{Picker: p, Logger: quiet, Service: "a"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var r *listener.SNIRouter
	if routed {
		pat, _ := sniroute.ParsePattern("a.test")
		table, err := sniroute.Build("bench", []sniroute.Service[*listener.Server]{{Name: "a", Patterns: []sniroute.Pattern{pat}, Value: srv}})
		if err != nil {
			b.Fatal(err)
		}
		r = &listener.SNIRouter{Listen: "bench", Routes: table, Logger: quiet}
		go r.Serve(ln)
	} else {
		go srv.Serve(ln)
	}
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if r != nil {
			r.Shutdown(ctx)
		}
		srv.Shutdown(ctx)
	}
}
