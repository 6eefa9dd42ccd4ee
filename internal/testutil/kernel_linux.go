package testutil

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// SkipOnOldKernel skips tb on a kernel older than minVersion ("6.6"),
// naming the feature that needs it ("TCX"). Use it where the test means
// to check that the feature works from that version on; code under test
// decides by probing, never by version.
func SkipOnOldKernel(tb testing.TB, minVersion, feature string) {
	tb.Helper()
	want, err := parseVersion(minVersion)
	if err != nil {
		tb.Fatalf("SkipOnOldKernel(%q): %v", minVersion, err)
	}
	release, have, err := kernelVersion()
	if err != nil {
		tb.Fatalf("kernel version: %v", err)
	}
	if compareVersions(have, want) < 0 {
		tb.Skipf("kernel %s is older than %s, which %s needs", release, minVersion, feature)
	}
}

// kernelVersion returns uname -r and its leading numbers.
func kernelVersion() (string, [3]int, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", [3]int{}, fmt.Errorf("uname: %w", err)
	}
	release := unix.ByteSliceToString(u.Release[:])
	v, err := parseVersion(release)
	return release, v, err
}

// parseVersion reads "6.6", "6.1.0-31-amd64" or "6.18.44-fc" as up to
// three numbers; anything after the numbers is ignored.
func parseVersion(s string) ([3]int, error) {
	var v [3]int
	num, _, _ := strings.Cut(s, "-")
	parts := strings.SplitN(num, ".", 3)
	for i, p := range parts {
		end := 0
		for end < len(p) && p[end] >= '0' && p[end] <= '9' {
			end++
		}
		n, err := strconv.Atoi(p[:end])
		if err != nil {
			return v, fmt.Errorf("version %q: %w", s, err)
		}
		v[i] = n
	}
	return v, nil
}

func compareVersions(a, b [3]int) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}
