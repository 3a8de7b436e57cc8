package etcdreg

import (
	"testing"
	"time"
)

func TestEntryOf(t *testing.T) {
	created := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	val := value{Weight: 4, Draining: true, Created: created}.encode()
	e, err := entryOf("/fulcrum", []byte("/fulcrum/web/[::1]:8080"), []byte(val))
	if err != nil {
		t.Fatal(err)
	}
	want := Entry{Service: "web", HostPort: "[::1]:8080", Weight: 4, Draining: true, Created: created}
	if e != want {
		t.Fatalf("entryOf = %+v, want %+v", e, want)
	}
	for _, tc := range []struct{ name, key, val string }{
		{"other prefix", "/other/web/127.0.0.1:80", val},
		{"prefix of prefix", "/fulcrumx/web/127.0.0.1:80", val},
		{"no service", "/fulcrum/127.0.0.1:80", val},
		{"deeper", "/fulcrum/web/x/127.0.0.1:80", val},
		{"bad value", "/fulcrum/web/127.0.0.1:80", "{"},
		{"weight 0", "/fulcrum/web/127.0.0.1:80", `{"weight":0}`},
		// One backend, one key: another spelling of 127.0.0.1:80 or of a name is not a key.
		{"port with a sign", "/fulcrum/web/127.0.0.1:+80", val},
		{"port leading zero", "/fulcrum/web/127.0.0.1:080", val},
		{"upper-case name", "/fulcrum/web/Backend.example:80", val},
		{"mapped IPv4", "/fulcrum/web/[::ffff:127.0.0.1]:80", val},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := entryOf("/fulcrum", []byte(tc.key), []byte(tc.val)); err == nil {
				t.Fatalf("entryOf(%q, %q) accepted", tc.key, tc.val)
			}
		})
	}
}

// FuzzEntryOf feeds keys and values as another writer could have left them: entryOf never
// panics, and a key it accepts is the key of the entry it returns.
func FuzzEntryOf(f *testing.F) {
	f.Add("/fulcrum/web/127.0.0.1:8080", `{"weight":1,"draining":false,"created":"2026-12-01T12:00:00Z"}`)
	f.Add("/fulcrum/web/[::1]:80", `{"weight":2,"draining":true}`)
	f.Fuzz(func(t *testing.T, key, val string) {
		e, err := entryOf("/fulcrum", []byte(key), []byte(val))
		if err != nil {
			if e != (Entry{}) {
				t.Fatalf("an error with an entry: %v %+v", err, e)
			}
			return
		}
		back, err := keyOf("/fulcrum", e.Service, e.HostPort)
		if err != nil || back != key || e.Weight < 1 {
			t.Fatalf("entryOf(%q) = %+v; key again %q, %v", key, e, back, err)
		}
	})
}
