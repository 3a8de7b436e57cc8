package tlshello

import "testing"

// BenchmarkAdvance parses real hellos into one reused buffer: it must not allocate.
func BenchmarkAdvance(b *testing.B) {
	hellos := realHellos(b)
	cases := map[string][]byte{
		"chromium":                 hellos["chromium"],
		"go_mlkem":                 hellos["go_mlkem"],
		"16KiB_two_records":        records(helloMsg(b, "big.example.com", MaxHello), 16384),
		"chromium_in_four_records": records(corpusTail(hellos["chromium"]), 1, 2, 500, 16384),
	}
	for name, data := range cases {
		b.Run(name, func(b *testing.B) {
			buf := make([]byte, BufferSize)
			var r Reader
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(buf)
				n := copy(r.Free(), data)
				if r.Advance(n) != Done {
					b.Fatal(r.Status(), r.Reason())
				}
			}
		})
	}
}

// corpusTail is the handshake message of a one-record hello.
func corpusTail(rec []byte) []byte { return rec[recordHeaderLen:] }
