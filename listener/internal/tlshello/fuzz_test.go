package tlshello

import (
	"bytes"
	"testing"
)

// FuzzClientHello feeds any bytes whole and in 7-byte reads: both must reach the same outcome,
// Bytes must be exactly the prefix read, and a done hello must end on a record boundary.
// The seeds are real hellos (testdata/fuzz/FuzzClientHello) and a synthetic 16 KiB one.
func FuzzClientHello(f *testing.F) {
	f.Add(records(helloMsg(f, "big.example.com", MaxHello), 16384))
	f.Fuzz(func(t *testing.T, data []byte) {
		var whole, pieces Reader
		feed(&whole, data, len(data))
		feed(&pieces, data, 7)
		if whole.Status() != pieces.Status() || whole.Reason() != pieces.Reason() ||
			!bytes.Equal(whole.ServerName(), pieces.ServerName()) {
			t.Fatalf("whole: %v %q %q; in pieces: %v %q %q", whole.Status(), whole.Reason(),
				whole.ServerName(), pieces.Status(), pieces.Reason(), pieces.ServerName())
		}
		if !bytes.HasPrefix(data, whole.Bytes()) || len(whole.Bytes()) > BufferSize {
			t.Fatal("the bytes to forward are not the bytes read")
		}
		name := whole.ServerName()
		if whole.Status() == Done && (whole.HelloLen() > len(whole.Bytes()) || len(name) > 0 && !validName(name)) {
			t.Fatal("a done hello with a bad name or length")
		}
		if whole.Status() == Refused && whole.Reason() != ReasonMalformed && whole.Reason() != ReasonTooLarge {
			t.Fatalf("reason %q", whole.Reason())
		}
	})
}
