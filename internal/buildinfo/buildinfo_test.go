package buildinfo

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	for _, tc := range []struct {
		name   string
		bi     *debug.BuildInfo
		linked string
		want   Info
		text   string
	}{
		{"none", nil, "", Info{"devel", "unknown", false, "unknown"}, "devel (revision unknown, unknown)"},
		{"release", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "v1.2.3"}, Settings: vcs("abc123", "false")},
			"", Info{"v1.2.3", "abc123", false, "go1.26.1"}, "v1.2.3 (revision abc123, go1.26.1)"},
		{"checkout with changes", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}, Settings: vcs("abc123", "true")},
			"", Info{"devel", "abc123", true, "go1.26.1"}, "devel (revision abc123-modified, go1.26.1)"},
		{"buildvcs=false", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}},
			"", Info{"devel", "unknown", false, "go1.26.1"}, "devel (revision unknown, go1.26.1)"},
		{"linked version", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}},
			"v9.9.9", Info{"v9.9.9", "unknown", false, "go1.26.1"}, "v9.9.9 (revision unknown, go1.26.1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fromBuildInfo(tc.bi, tc.linked)
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if got.String() != tc.text {
				t.Errorf("String() = %q, want %q", got.String(), tc.text)
			}
		})
	}
}

// Read in a test binary: the Go version is the running toolchain's, and nothing is empty.
func TestReadFillsEveryField(t *testing.T) {
	i := Read()
	if i.GoVersion != runtime.Version() || i.Version == "" || i.Revision == "" {
		t.Errorf("Read() = %+v", i)
	}
}
