package tlshello

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

// realHellos are the seeds captured from real clients (testdata/capture), by file name.
func realHellos(t testing.TB) map[string][]byte {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", "FuzzClientHello")
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string][]byte)
	for _, f := range files {
		raw, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[f.Name()] = corpusBytes(t, f.Name(), string(raw))
	}
	return out
}

// corpusBytes reads the one []byte value of a fuzz corpus file.
func corpusBytes(t testing.TB, name, entry string) []byte {
	t.Helper()
	_, lit, ok := strings.Cut(strings.TrimSpace(entry), "\n[]byte(")
	if !ok || !strings.HasSuffix(lit, ")") {
		t.Fatalf("%s: not a corpus entry of one []byte", name)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return []byte(s)
}

// helloMsg builds a ClientHello handshake message naming name ("" for none), with a padding
// extension that makes its body exactly bodyLen bytes when bodyLen is not 0.
func helloMsg(t testing.TB, name string, bodyLen int) []byte {
	t.Helper()
	build := func(pad int) []byte {
		var b cryptobyte.Builder
		b.AddUint8(typeClientHello)
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint16(0x0303)
			b.AddBytes(make([]byte, 32))
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(make([]byte, 32)) })
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(0x1301) })
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				if name != "" {
					addServerName(b, name)
				}
				if pad >= 0 {
					b.AddUint16(21) // padding (RFC 7685)
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(make([]byte, pad)) })
				}
			})
		})
		return b.BytesOrPanic()
	}
	if bodyLen == 0 {
		return build(-1)
	}
	short := build(0)
	pad := bodyLen - (len(short) - handshakeHeaderLen)
	if pad < 0 {
		t.Fatalf("a hello naming %q cannot be %d bytes", name, bodyLen)
	}
	return build(pad)
}

func addServerName(b *cryptobyte.Builder, name string) {
	b.AddUint16(extServerName)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint8(nameTypeHost)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(name)) })
		})
	})
}

// records wraps msg in handshake records carrying sizes[i] bytes each; the last size repeats
// until msg is used up.
func records(msg []byte, sizes ...int) []byte {
	var out []byte
	for i := 0; len(msg) > 0; i++ {
		n := min(sizes[min(i, len(sizes)-1)], len(msg))
		out = append(out, recordHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// feed gives data to r chunk bytes at a time, as reads would, and returns the status after
// each chunk.
func feed(r *Reader, data []byte, chunk int) []Status {
	var seen []Status
	for len(data) > 0 {
		free := r.Free()
		if len(free) == 0 {
			break
		}
		n := copy(free, data[:min(chunk, len(data))])
		data = data[n:]
		seen = append(seen, r.Advance(n))
	}
	return seen
}

// checkDone fails t unless r parsed a hello naming want and kept sent as it was.
func checkDone(t *testing.T, r *Reader, sent []byte, want string) {
	t.Helper()
	if r.Status() != Done {
		t.Fatalf("status %v (reason %q), want done", r.Status(), r.Reason())
	}
	if got := string(r.ServerName()); got != want {
		t.Errorf("server name %q, want %q", got, want)
	}
	if !bytes.Equal(r.Bytes(), sent) {
		t.Errorf("bytes to forward differ from the bytes sent (%d vs %d bytes)", len(r.Bytes()), len(sent))
	}
}
