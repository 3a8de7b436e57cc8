package listener_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"github.com/fulcrumlb/fulcrum/listener"
)

// TestSNIRoutesByServerName: services a (a.test), b (*.b.test) and a default share one
// address; crypto/tls clients reach the backend their name names and see its certificate; a
// hello without a name and plain HTTP reach the default, which gets the client's bytes first.
func TestSNIRoutesByServerName(t *testing.T) {
	listener.EachPlane(t, func(t *testing.T) {
		rig := startSNIRig(t, true)
		for _, tc := range []struct{ name, want, cn string }{
			{"a.test", "a\n", "a.test"},
			{"x.b.test", "b\n", "*.b.test"},
			{"Y.B.TEST", "b\n", "*.b.test"},
		} {
			roots := rig.rootsA
			if tc.want == "b\n" {
				roots = rig.rootsB
			}
			line, cn := rig.tlsLine(t, tc.name, roots)
			if line != tc.want || cn != tc.cn {
				t.Errorf("%s: got %q from a certificate for %q, want %q from %q", tc.name, line, cn, tc.want, tc.cn)
			}
		}
		// No server name: the default gets the hello, unchanged.
		c := rig.dial(t)
		go tls.Client(c, &tls.Config{InsecureSkipVerify: true}).Handshake()
		eventually(t, "the default gets the nameless hello", func() bool {
			b := rig.def.last()
			return len(b) > 0 && b[0] == 0x16
		})
		// Plain HTTP: the default, the request's bytes first.
		h := rig.dial(t)
		h.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		line, err := bufio.NewReader(h).ReadString('\n')
		if err != nil || line != "default\n" || !bytes.HasPrefix(rig.def.last(), []byte("GET / ")) {
			t.Errorf("plain HTTP: %q, %v; the default saw %q", line, err, rig.def.last())
		}
		if rig.obs.get(&rig.obs.routed, "a") != 1 || rig.obs.get(&rig.obs.routed, "b") != 2 || rig.obs.get(&rig.obs.routed, "(default)") != 2 {
			t.Errorf("routed counts %v", rig.obs.routed)
		}
	})
}

// TestSNIHelloInPieces: a hello written one byte at a time, and one split over two TLS
// records, are reassembled and routed by their name; the backend gets the very bytes.
func TestSNIHelloInPieces(t *testing.T) {
	listener.EachPlane(t, func(t *testing.T) {
		rig := startSNIRig(t, false)
		hello := helloOf(t, "a.test")
		c := rig.dial(t)
		for i := range hello {
			if _, err := c.Write(hello[i : i+1]); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, "the byte-by-byte hello reaches a", func() bool { return rig.backends["a"].accepted() == 1 })

		body := hello[5:]
		k := len(body) / 3
		split := append([]byte{0x16, hello[1], hello[2], byte(k >> 8), byte(k)}, body[:k]...)
		split = append(split, 0x16, hello[1], hello[2], byte((len(body)-k)>>8), byte(len(body)-k))
		split = append(split, body[k:]...)
		c2 := rig.dial(t)
		c2.Write(split)
		eventually(t, "the two-record hello reaches a", func() bool { return rig.backends["a"].accepted() == 2 })
		if n := rig.obs.get(&rig.obs.routed, "a"); n != 2 {
			t.Errorf("routed to a: %d, want 2", n)
		}
		c.Close()
		c2.Close()
		// The hello's bytes count as the client's: in Traffic.Up and in the meter.
		eventually(t, "both connections closed", func() bool { up, _, _ := rig.traffic.closed("a"); return len(up) == 2 })
		up, names, meter := rig.traffic.closed("a")
		slices.Sort(up)
		if want := []int64{int64(len(hello)), int64(len(split))}; !slices.Equal(up, want) || meter != want[0]+want[1] {
			t.Errorf("bytes up %v (meter %d), want %v: the hello's bytes", up, meter, want)
		}
		if names[0] != "a.test" || names[1] != "a.test" {
			t.Errorf("ConnInfo.SNI %q, want a.test", names)
		}
	})
}

// TestSNIRefusals: without a default, plain HTTP is reset (no_default); 64 KiB of garbage
// opening like a record is refused; a client that sends 3 bytes and waits is closed after
// the hello timeout. None reaches a backend, and every count goes back to 0.
func TestSNIRefusals(t *testing.T) {
	listener.EachPlane(t, func(t *testing.T) {
		rig := startSNIRig(t, false)
		plain := rig.dial(t)
		plain.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		if !closedWithin(plain, 5*time.Second) {
			t.Error("plain HTTP without a default: not closed")
		}
		garbage := bytes.Repeat([]byte{0x16, 0x03, 0x01, 0xff, 0xff}, 64<<10/5)
		g := rig.dial(t)
		g.Write(garbage)
		if !closedWithin(g, 5*time.Second) {
			t.Error("64 KiB of garbage: not closed")
		}
		slow := rig.dial(t)
		slow.Write([]byte{0x16, 0x03, 0x01})
		start := time.Now()
		if !closedWithin(slow, 5*time.Second) {
			t.Error("3 bytes and a wait: not closed within 5s")
		}
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Errorf("3 bytes and a wait: closed after %v, before the 300ms hello timeout", d)
		}
		eventually(t, "refusals counted", func() bool {
			o := rig.obs
			return o.get(&o.refused, listener.SNINoDefault) == 1 && o.get(&o.refused, listener.SNITimeout) == 1 &&
				o.get(&o.refused, listener.SNITooLarge)+o.get(&o.refused, listener.SNIMalformed) == 1
		})
		if n := rig.backends["a"].accepted() + rig.backends["b"].accepted(); n != 0 {
			t.Errorf("backends saw %d connections, want 0", n)
		}
		rig.assertIdle(t)
	})
}

// TestSNIAfterProxyHeader: with inbound PROXY headers accepted, the header is read first,
// then the hello; the connection is routed by its name and its client is the header's.
func TestSNIAfterProxyHeader(t *testing.T) {
	listener.EachPlane(t, func(t *testing.T) {
		rig := startSNIRig(t, false, func(r *listener.SNIRouter) {
			r.ProxyProtocol = listener.ProxyProtocol{Accept: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
		})
		hello := helloOf(t, "x.b.test")
		c := rig.dial(t)
		header := "PROXY TCP4 203.0.113.7 192.0.2.1 4321 443\r\n"
		c.Write(append([]byte(header), hello...)) // in one segment: the hello's start is read with the header
		eventually(t, "routed to b", func() bool { return rig.backends["b"].accepted() == 1 })
		c.Close()
		eventually(t, "closed", func() bool { up, _, _ := rig.traffic.closed("b"); return len(up) == 1 })
		up, _, _ := rig.traffic.closed("b")
		if up[0] != int64(len(hello)) {
			t.Errorf("bytes up %d, want the hello's %d (not the header)", up[0], len(hello))
		}
		if client := rig.traffic.lastClient(); client != "203.0.113.7:4321" {
			t.Errorf("client %s, want the PROXY header's 203.0.113.7:4321", client)
		}
	})
}

// bigHello is a ClientHello naming name whose body is padded (RFC 7685) to bodyLen bytes,
// carried in records of at most 16 KiB: a post-quantum-sized hello in two records.
func bigHello(t *testing.T, name string, bodyLen int) []byte {
	t.Helper()
	msg := func(pad int) []byte {
		var b cryptobyte.Builder
		b.AddUint8(1) // ClientHello
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint16(0x0303)
			b.AddBytes(make([]byte, 32))                                                   // random
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {})                       // session id
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(0x1301) }) // cipher suites
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })        // compression
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				b.AddUint16(0) // server_name
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						b.AddUint8(0) // host_name
						b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(name)) })
					})
				})
				b.AddUint16(21) // padding
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(make([]byte, pad)) })
			})
		})
		return b.BytesOrPanic()
	}
	m := msg(bodyLen - (len(msg(0)) - 4))
	var out []byte
	for len(m) > 0 {
		n := min(len(m), 16<<10)
		out = append(out, 0x16, 3, 1, byte(n>>8), byte(n))
		out = append(out, m[:n]...)
		m = m[n:]
	}
	return out
}

// TestSNIBigHello: a 16 KiB hello (two records) is reassembled and routed by its name; one
// byte over is refused as too large.
func TestSNIBigHello(t *testing.T) {
	listener.EachPlane(t, func(t *testing.T) {
		rig := startSNIRig(t, false)
		hello := bigHello(t, "a.test", 16<<10)
		c := rig.dial(t)
		c.Write(hello)
		eventually(t, "the 16 KiB hello reaches a", func() bool { return rig.backends["a"].accepted() == 1 })
		c.Close()
		eventually(t, "closed", func() bool { up, _, _ := rig.traffic.closed("a"); return len(up) == 1 })
		if up, _, _ := rig.traffic.closed("a"); up[0] != int64(len(hello)) {
			t.Errorf("bytes up %d, want the hello's %d", up[0], len(hello))
		}
		over := rig.dial(t)
		over.Write(bigHello(t, "a.test", 16<<10+1))
		if !closedWithin(over, 5*time.Second) {
			t.Error("a hello over 16 KiB: not closed")
		}
		eventually(t, "too_large counted", func() bool { return rig.obs.get(&rig.obs.refused, listener.SNITooLarge) == 1 })
	})
}
