//go:build !linux

package listener

import (
	"errors"
	"runtime"
)

// newLoopPlane reports that event loops need Linux's epoll.
func newLoopPlane(loopConfig) (loopPlane, error) {
	return nil, errors.New("listener: the epoll data plane needs Linux, not " + runtime.GOOS)
}
