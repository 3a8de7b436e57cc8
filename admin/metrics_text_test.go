package admin

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// oneSeries is a family written by textWriter with one series whose labels are
// backend=backend and service="default", read back by the text parser.
func oneSeries(t *testing.T, help, backend string, v float64) (gotHelp, gotBackend string, gotV float64) {
	t.Helper()
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	tw := newTextWriter(bw)
	tw.family(&textFamily{name: "fulcrum_test_total", help: help, typ: "counter"})
	tw.sample("fulcrum_test_total", backendLabels(nil, "default", backend), v)
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(&out)
	if err != nil {
		t.Fatalf("parse %q: %v", out.String(), err)
	}
	f := fams["fulcrum_test_total"]
	if f == nil || len(f.GetMetric()) != 1 {
		t.Fatalf("parse %q: want one series, got %v", out.String(), fams)
	}
	s := f.GetMetric()[0]
	for _, l := range s.GetLabel() {
		if l.GetName() == "backend" {
			gotBackend = l.GetValue()
		}
	}
	return f.GetHelp(), gotBackend, s.GetCounter().GetValue()
}

// asRead is what a label value or help text reads back as: every byte that is not UTF-8
// replaced by U+FFFD.
func asRead(s string) string { return string([]rune(s)) }

func TestTextWriterEscapes(t *testing.T) {
	for _, tc := range []struct{ name, help, value string }{
		{"plain", "Plain help.", "127.0.0.1:80"},
		{"quote", `say "hi"`, `a"b`},
		{"backslash", `C:\dir\`, `a\b\`},
		{"newline", "two\nlines", "a\nb"},
		{"escaped already", `\n \" \\`, `\n \" \\`},
		{"utf-8", "héllo ☃", "bäckend:80"},
		{"not utf-8", "a\xffb", "x\xc3(y\xff"},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			help, value, v := oneSeries(t, tc.help, tc.value, 12345678901)
			if help != asRead(tc.help) || value != asRead(tc.value) || v != 12345678901 {
				t.Errorf("read back help %q, value %q, %v; want %q, %q, 12345678901", help, value, v, asRead(tc.help), asRead(tc.value))
			}
		})
	}
}

// FuzzTextLabel: any label value, help text and value are written so that the text
// parser reads them back unchanged (bytes that are not UTF-8 as U+FFFD; a help text without
// its leading blanks).
//
//	go test -run='^$' -fuzz='^FuzzTextLabel$' -fuzztime=10s ./admin
func FuzzTextLabel(f *testing.F) {
	f.Add("help", "127.0.0.1:80", 1.0)
	f.Add(`a\nb"c`, "x\"y\\z\n", 0.5)
	f.Add("\xff", "\xc3(", 1e21)
	f.Add("", "", -0.0)
	f.Fuzz(func(t *testing.T, help, value string, v float64) {
		if v != v { // NaN reads back as NaN, which equals nothing
			v = 0
		}
		gotHelp, gotValue, gotV := oneSeries(t, help, value, v)
		// The parser skips the blanks before a help text, as for every token of a line.
		if gotHelp != strings.TrimLeft(asRead(help), " \t") || gotValue != asRead(value) || gotV != v {
			t.Errorf("wrote %q, %q, %v; read %q, %q, %v", help, value, v, gotHelp, gotValue, gotV)
		}
	})
}

func TestAcceptsGzip(t *testing.T) {
	for header, want := range map[string]bool{
		"":                       false,
		"gzip":                   true,
		"GZIP":                   true,
		"deflate, gzip;q=0.8":    true,
		"gzip;q=0":               false,
		"gzip; q=0.0, identity":  false,
		"*":                      true,
		"br, zstd":               false,
		"identity;q=1, *;q=0":    false,
		"gzip;q=bad":             true,
		"x-gzip":                 false,
		" gzip ; Q=0.001 ":       true,
		"gzip;q=0;foo=bar, gzip": true,
	} {
		if got := acceptsGzip(header); got != want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", header, got, want)
		}
	}
}
