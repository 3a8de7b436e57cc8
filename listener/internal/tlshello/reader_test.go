package tlshello

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// wantNames are the names the captured clients were asked to reach.
var wantNames = map[string]string{
	"chromium":      "a.test",
	"curl_sni":      "a.test",
	"curl_no_sni":   "", // curl sends no name for an address
	"go_mlkem":      "svc.b.test",
	"openssl_sni":   "api.example.com",
	"openssl_tls12": "Mixed.Example.COM", // case kept: routing folds it
}

func TestRealHellos(t *testing.T) {
	hellos := realHellos(t)
	for name, want := range wantNames {
		t.Run(name, func(t *testing.T) {
			data, ok := hellos[name]
			if !ok {
				t.Fatalf("no seed %s", name)
			}
			var r Reader
			feed(&r, data, len(data))
			checkDone(t, &r, data, want)
			if r.HelloLen() != len(data) {
				t.Errorf("hello length %d, want %d", r.HelloLen(), len(data))
			}
		})
	}
	if n := len(hellos["go_mlkem"]); n < 1200 {
		t.Errorf("the post-quantum hello is %d bytes; a hybrid key share makes it over 1200", n)
	}
}

func TestOneByteAtATime(t *testing.T) {
	for name, data := range realHellos(t) {
		t.Run(name, func(t *testing.T) {
			var r Reader
			seen := feed(&r, data, 1)
			for i, st := range seen[:len(seen)-1] {
				if st != NeedMore {
					t.Fatalf("byte %d of %d: %v, want need_more", i+1, len(data), st)
				}
			}
			checkDone(t, &r, data, wantNames[name])
		})
	}
}

func TestSplitAcrossRecords(t *testing.T) {
	msg := helloMsg(t, "a.test", 1500)
	cases := map[string][]int{
		"two records":                     {700, 16384},
		"header split over 3 records":     {1, 2, 16384},
		"one byte per record, 64 of them": {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 16384},
	}
	for name, sizes := range cases {
		t.Run(name, func(t *testing.T) {
			data := records(msg, sizes...)
			for _, chunk := range []int{1, 3, len(data)} {
				var r Reader
				feed(&r, data, chunk)
				checkDone(t, &r, data, "a.test")
			}
		})
	}
}

func TestSizeLimit(t *testing.T) {
	t.Run("16 KiB hello", func(t *testing.T) {
		data := records(helloMsg(t, "big.example.com", MaxHello), 16384)
		var r Reader
		feed(&r, data, 1000)
		checkDone(t, &r, data, "big.example.com")
	})
	t.Run("16 KiB + 1", func(t *testing.T) {
		data := records(helloMsg(t, "big.example.com", MaxHello+1), 16384)
		var r Reader
		feed(&r, data, 1000)
		if r.Status() != Refused || r.Reason() != ReasonTooLarge {
			t.Fatalf("status %v reason %q, want refused too_large", r.Status(), r.Reason())
		}
	})
	t.Run("65 records", func(t *testing.T) {
		data := records(helloMsg(t, "a.test", 0), 1)
		var r Reader
		feed(&r, data, len(data))
		if r.Status() != Refused || r.Reason() != ReasonTooLarge {
			t.Fatalf("status %v reason %q, want refused too_large", r.Status(), r.Reason())
		}
	})
}

func TestNoServerName(t *testing.T) {
	data := records(helloMsg(t, "", 0), 16384)
	var r Reader
	feed(&r, data, 5)
	checkDone(t, &r, data, "")
}

func TestPlainHTTPIsNotTLS(t *testing.T) {
	data := []byte("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
	var r Reader
	seen := feed(&r, data, len(data))
	if len(seen) != 1 || seen[0] != NotTLS {
		t.Fatalf("statuses %v, want [not_tls]", seen)
	}
	if !bytes.Equal(r.Bytes(), data) {
		t.Errorf("the bytes read must all go to the default service")
	}
}

func TestGarbage64KiB(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 18))
	junk := make([]byte, 64<<10)
	for i := range junk {
		junk[i] = byte(rng.Uint32())
	}
	cases := map[string][]byte{
		"random":                     junk,
		"handshake bytes":            bytes.Repeat([]byte{recordHandshake}, 64<<10),
		"a record header, then junk": append([]byte{recordHandshake, 3, 1, 0x40, 0}, junk...),
		"a huge record":              append([]byte{recordHandshake, 3, 1, 0xff, 0xff}, junk...),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			var r Reader
			st, err := r.Fill(bytes.NewReader(data))
			if err != nil || (st != NotTLS && st != Refused) {
				t.Fatalf("status %v, err %v: want not_tls or refused", st, err)
			}
			if len(r.Bytes()) > BufferSize {
				t.Fatalf("read %d bytes, more than the buffer", len(r.Bytes()))
			}
		})
	}
}

func TestTruncated(t *testing.T) {
	data := realHellos(t)["chromium"]
	var r Reader
	st, err := r.Fill(bytes.NewReader(data[:len(data)-1]))
	if st != NeedMore || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("status %v, err %v: want need_more and an unexpected EOF", st, err)
	}
}

func TestMalformed(t *testing.T) {
	hello := helloMsg(t, "a.test", 0)
	serverHello := append([]byte{0x02}, hello[1:]...)
	alert := []byte{0x15, 3, 3, 0, 2, 2, 40}
	twoNames := helloWithTwoNames(t)
	cases := map[string][]byte{
		"server hello":             records(serverHello, 16384),
		"alert between records":    append(append(records(hello[:10], 16384), alert...), records(hello[10:], 16384)...),
		"empty record":             {recordHandshake, 3, 1, 0, 0},
		"bad record version":       {recordHandshake, 2, 0, 0, 4, 1, 0, 0, 0},
		"bytes after the hello":    records(append(bytes.Clone(hello), 1, 0, 0, 0), 16384),
		"two server names":         records(twoNames, 16384),
		"body shorter than fields": records([]byte{typeClientHello, 0, 0, 2, 3, 3}, 16384),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			var r Reader
			feed(&r, data, len(data))
			if r.Status() != Refused || r.Reason() != ReasonMalformed {
				t.Fatalf("status %v reason %q, want refused malformed", r.Status(), r.Reason())
			}
		})
	}
}

// helloWithTwoNames is a hello with two server_name extensions, which TLS forbids.
func helloWithTwoNames(t *testing.T) []byte {
	t.Helper()
	// A hello without extensions ends with their (zero) length; the one naming a.test has the
	// same bytes, then its server_name extension.
	none := helloMsg(t, "", 0)
	tail := helloMsg(t, "a.test", 0)[len(none):]
	extStart := len(none) - 2
	one := none
	out := append(bytes.Clone(one[:extStart]), byte(2*len(tail)>>8), byte(2*len(tail)))
	out = append(out, tail...)
	out = append(out, tail...)
	n := len(out) - handshakeHeaderLen
	out[1], out[2], out[3] = byte(n>>16), byte(n>>8), byte(n)
	return out
}

func TestBytesAfterTheHello(t *testing.T) {
	hello := realHellos(t)["go_mlkem"]
	ccs := []byte{0x14, 3, 3, 0, 1, 1}
	data := append(bytes.Clone(hello), ccs...)
	var r Reader
	feed(&r, data, len(data))
	checkDone(t, &r, data, "svc.b.test")
	if r.HelloLen() != len(hello) {
		t.Errorf("hello length %d, want %d", r.HelloLen(), len(hello))
	}
}

func TestResetReusesTheBuffer(t *testing.T) {
	buf := make([]byte, BufferSize)
	var r Reader
	for name, data := range realHellos(t) {
		r.Reset(buf)
		feed(&r, data, 100)
		checkDone(t, &r, data, wantNames[name])
		if &r.Bytes()[0] != &buf[0] {
			t.Fatal("Reset's buffer is not the one read into")
		}
	}
}
