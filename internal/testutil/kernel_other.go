//go:build !linux

package testutil

import (
	"runtime"
	"testing"
)

// SkipOnOldKernel skips tb: feature needs a Linux kernel.
func SkipOnOldKernel(tb testing.TB, minVersion, feature string) {
	tb.Helper()
	tb.Skipf("%s needs Linux %s or later, not %s", feature, minVersion, runtime.GOOS)
}
