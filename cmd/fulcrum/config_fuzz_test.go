package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzConfigFile: any config file is either read or refused with a message; none panics, and
// no refusal names a Go type or the YAML library.
func FuzzConfigFile(f *testing.F) {
	for _, seed := range []string{
		"",
		"# only a comment\n",
		"listen: 127.0.0.1:0\nttl: 30s\n",
		"ttl: 10\n",
		"metrics: maybe\n",
		"services:\n  - name: db\n    listen: 127.0.0.1:1\n    colour: red\n",
		"services:\n  - name: db\n    listen: [a, [b]]\n    retries: x\n",
		"services: db\n",
		"services:\n  - 1\n  - [x]\n",
		"listen: [\n",
		"- a\n- b\n",
		"backend: [127.0.0.1:1, 127.0.0.1:1]\n",
	} {
		f.Add(seed)
	}
	flags := withConfigFile(serveFlags())
	top := serviceConfig{name: "default"}
	f.Fuzz(func(t *testing.T, data string) {
		path := filepath.Join(t.TempDir(), "fulcrum.yaml")
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err1 := readConfigFile(path, flags)
		_, err2 := readServicesFile(path, top)
		for _, err := range []error{err1, err2} {
			if err == nil {
				continue
			}
			for _, goName := range []string{"main.", "yaml.", "!!", "time.Duration", "reflect"} {
				if strings.Contains(err.Error(), goName) {
					t.Errorf("%q: error %q names %q", data, err, goName)
				}
			}
		}
	})
}
