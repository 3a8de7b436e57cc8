// Package buildinfo says which build of fulcrum is running: the module version, the VCS
// revision it was built from and the Go version, read from the build information the Go
// toolchain embeds in every binary (runtime/debug.ReadBuildInfo).
//
//	info := buildinfo.Read()
//	fmt.Println(info) // v1.2.3 (revision 0123abcd…, go1.26.1)
//
// A binary built with -buildvcs=false, or outside a VCS checkout, has no revision: Revision
// is then "unknown". One built from a checkout (go build, go run, go test) has no module
// version: Version is then "devel". Neither is an error; both are reported as such.
package buildinfo

import (
	"fmt"
	"runtime/debug"
)

// version, when set at link time (-ldflags "-X github.com/fulcrumlb/fulcrum/internal/buildinfo.version=v1.2.3"),
// overrides the module version: for builds that know their release but not as a module.
var version string

// What Read reports when the build information does not say.
const (
	UnknownVersion  = "devel"
	UnknownRevision = "unknown"
)

// Info is one build's identity. Every field is set: the Unknown values stand for what the
// binary does not record.
type Info struct {
	Version   string // module version, such as v1.2.3 or a pseudo-version; "devel" if none
	Revision  string // VCS revision (a commit hash); "unknown" if not recorded
	Modified  bool   // the work tree had changes the revision does not hold
	GoVersion string // the Go toolchain that built it, such as go1.26.1
}

// Read returns the running binary's Info.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return fromBuildInfo(nil, version)
	}
	return fromBuildInfo(bi, version)
}

// fromBuildInfo is Read over given build information (nil: none) and link-time version.
func fromBuildInfo(bi *debug.BuildInfo, linked string) Info {
	info := Info{Version: UnknownVersion, Revision: UnknownRevision, GoVersion: "unknown"}
	if bi == nil {
		if linked != "" {
			info.Version = linked
		}
		return info
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		info.Version = v
	}
	if linked != "" {
		info.Version = linked
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if s.Value != "" {
				info.Revision = s.Value
			}
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// RevisionText is the revision with "-modified" after it when the work tree had changes.
func (i Info) RevisionText() string {
	if i.Modified && i.Revision != UnknownRevision {
		return i.Revision + "-modified"
	}
	return i.Revision
}

// String is the one line `fulcrum --version` prints after the name.
func (i Info) String() string {
	return fmt.Sprintf("%s (revision %s, %s)", i.Version, i.RevisionText(), i.GoVersion)
}
