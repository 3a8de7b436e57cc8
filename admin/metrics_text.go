package admin

import (
	"bufio"
	"math"
	"strconv"
	"unicode/utf8"
)

// textWriter writes families of the Prometheus text format (version 0.0.4) line by line, as
// expfmt writes them, without building a series object per line: fulcrum's per-backend
// families (metrics_stream.go) have hundreds of thousands of lines with 50,000 backends, and
// client_golang's Gather makes several allocations per line and sorts them all before the
// first byte leaves. A family's HELP and TYPE lines are written with its first series, so
// a family without series is not shown, as with client_golang. Writes go to a bufio.Writer,
// which keeps the first error and drops the rest: Err reports it.
type textWriter struct {
	w       *bufio.Writer
	line    []byte // the line being built, reused
	labels  []byte // a series' labels being built, reused by the families' writers
	pending *textFamily
}

// textFamily is the name, help text and type ("counter", "gauge", "histogram") of a family.
type textFamily struct {
	name, help, typ string
}

func newTextWriter(w *bufio.Writer) *textWriter {
	return &textWriter{w: w, line: make([]byte, 0, 256), labels: make([]byte, 0, 128)}
}

// family starts f: its header is written with its first series.
func (t *textWriter) family(f *textFamily) { t.pending = f }

// Err is the first error a write met.
func (t *textWriter) Err() error {
	_, err := t.w.Write(nil)
	return err
}

// header writes the pending family's HELP and TYPE lines, once.
func (t *textWriter) header() {
	f := t.pending
	if f == nil {
		return
	}
	t.pending = nil
	b := append(t.line[:0], "# HELP "...)
	b = append(b, f.name...)
	b = append(b, ' ')
	b = appendEscaped(b, f.help, false)
	b = append(b, "\n# TYPE "...)
	b = append(b, f.name...)
	b = append(b, ' ')
	b = append(b, f.typ...)
	b = append(b, '\n')
	t.line = b
	_, _ = t.w.Write(b) // the bufio.Writer keeps the first error, for Err
}

// sample writes `name{labels} value`; labels is already escaped (appendLabel) and may be
// empty.
func (t *textWriter) sample(name string, labels []byte, v float64) {
	t.header()
	b := append(t.line[:0], name...)
	if len(labels) > 0 {
		b = append(b, '{')
		b = append(b, labels...)
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = appendFloat(b, v)
	b = append(b, '\n')
	t.line = b
	_, _ = t.w.Write(b) // the bufio.Writer keeps the first error, for Err
}

// appendLabel appends `name="value"` to dst, after a comma unless dst is empty; the value
// is escaped for the text format.
func appendLabel(dst []byte, name, value string) []byte {
	if len(dst) > 0 {
		dst = append(dst, ',')
	}
	dst = append(dst, name...)
	dst = append(dst, '=', '"')
	dst = appendEscaped(dst, value, true)
	return append(dst, '"')
}

// appendEscaped appends s as the text format escapes a label value (quoted) or a help text:
// a backslash and a line feed become \\ and \n, and in a label value a double quote becomes
// \". A byte that is not UTF-8 becomes U+FFFD, since a reader rejects a label value that is
// not UTF-8 (client_golang refuses to make such a series at all).
func appendEscaped(dst []byte, s string, quoted bool) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '\\':
				dst = append(dst, '\\', '\\')
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '"' && quoted:
				dst = append(dst, '\\', '"')
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return dst
}

// appendFloat appends v as expfmt writes a sample value or a bucket bound: the shortest
// representation that reads back as v, and +Inf, -Inf, NaN by those names.
func appendFloat(dst []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(dst, "NaN"...)
	case math.IsInf(v, +1):
		return append(dst, "+Inf"...)
	case math.IsInf(v, -1):
		return append(dst, "-Inf"...)
	}
	return strconv.AppendFloat(dst, v, 'g', -1, 64)
}
