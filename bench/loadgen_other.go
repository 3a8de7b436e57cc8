//go:build !linux

package bench

import (
	"context"
	"errors"
)

// runLight needs epoll: elsewhere the connrate and latency scenarios say so and measure
// nothing.
func runLight(context.Context, lightLoad) (load, error) {
	return load{}, errors.New("bench: the connrate and latency client needs Linux (epoll)")
}
