package admin_test

import (
	"encoding/json"
	"testing"

	"github.com/fulcrumlb/fulcrum/admin"
	"github.com/fulcrumlb/fulcrum/internal/buildinfo"
	"github.com/fulcrumlb/fulcrum/pool"
)

// /upstream/status names the running build at its top level, beside the fields it always had:
// the build's version, or the one the Overview sets, and its revision ("unknown" when the
// binary recorded none).
func TestStatusNamesBuild(t *testing.T) {
	build := buildinfo.Read()
	for _, tc := range []struct {
		name     string
		overview *admin.Overview
		want     string
	}{
		{"bare API", nil, build.Version},
		{"overview without version", &admin.Overview{}, build.Version},
		{"overview version", &admin.Overview{Version: "v1.2.3"}, "v1.2.3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := opsAdmin(t, &admin.API{Registry: &pool.Pool{Logger: quiet}, Logger: quiet, Overview: tc.overview})
			_, raw := opsReadStatus(t, base)
			var version, revision string
			json.Unmarshal(raw["version"], &version)
			json.Unmarshal(raw["revision"], &revision)
			if version != tc.want || revision != build.RevisionText() || revision == "" {
				t.Errorf("version %q revision %q, want %q and %q", version, revision, tc.want, build.RevisionText())
			}
			for _, field := range []string{"servers", "total", "timestamp", "services"} {
				if raw[field] == nil {
					t.Errorf("status lost its %q field", field)
				}
			}
		})
	}
}
