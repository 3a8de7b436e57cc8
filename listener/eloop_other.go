//go:build !linux

package listener

import (
	"errors"
	"runtime"
)

// EventLoops stands for the epoll data plane, which needs Linux; here it serves nothing.
type EventLoops struct{}

// NewEventLoops returns a stand-in whose Servers fail to serve.
func NewEventLoops(int) *EventLoops { return &EventLoops{} }

// Stop does nothing.
func (el *EventLoops) Stop() {}

// server reports that event loops need Linux's epoll.
func (el *EventLoops) server(*Server, *connBook, bool) (plane, error) {
	return nil, errors.New("listener: the epoll data plane needs Linux, not " + runtime.GOOS)
}
