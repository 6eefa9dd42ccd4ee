//go:build !linux

package cgroupfs

import (
	"fmt"
	"runtime"
)

// ID needs Linux's cgroup v2.
func ID(path string) (uint64, error) {
	return 0, fmt.Errorf("cgroup id of %s: cgroup v2 on %s: %w", path, runtime.GOOS, ErrNotSupported)
}

// Stat needs Linux's cgroup v2.
func Stat(path string) (Dir, error) {
	return Dir{}, fmt.Errorf("cgroup %s: cgroup v2 on %s: %w", path, runtime.GOOS, ErrNotSupported)
}
