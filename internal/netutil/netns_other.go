//go:build !linux

package netutil

import (
	"fmt"
	"runtime"
	"syscall"
)

// NetnsCookie needs Linux.
func NetnsCookie(syscall.Conn) (uint64, error) {
	return 0, fmt.Errorf("netns cookie on %s: %w", runtime.GOOS, ErrNotSupported)
}

// CurrentNetnsCookie needs Linux.
func CurrentNetnsCookie() (uint64, error) {
	return 0, fmt.Errorf("netns cookie on %s: %w", runtime.GOOS, ErrNotSupported)
}
