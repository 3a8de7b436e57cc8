//go:build !linux

package listener

import (
	"errors"
	"runtime"
	"time"
)

// SockmapConfig sets up the sockmap data plane, which needs Linux.
type SockmapConfig struct {
	After    time.Duration
	MaxConns int
}

// DefaultSockmapAfter is the sockmap plane's promotion age on Linux.
const DefaultSockmapAfter = 100 * time.Millisecond

// DefaultSockmapConns is the sockmap plane's default map size on Linux.
const DefaultSockmapConns = 32768

const planeSockmapNow DataPlane = "sockmap-now"

var errNoSockmap = errors.New("the sockmap data plane needs Linux, not " + runtime.GOOS)

// NewSockmapLoops fails: the sockmap plane needs Linux.
func NewSockmapLoops(int, SockmapConfig) (*EventLoops, error) { return nil, errNoSockmap }

// CheckSockmap reports that the sockmap plane needs Linux.
func CheckSockmap() error { return errNoSockmap }

// SockmapStats are the sockmap plane's counts.
type SockmapStats struct{ InKernel, Promoted, MapEntries, Paused int }

// SockmapStats is zero off Linux.
func (el *EventLoops) SockmapStats() SockmapStats { return SockmapStats{} }

func ownLoops(DataPlane) (*EventLoops, error) { return NewEventLoops(0), nil }
