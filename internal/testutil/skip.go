package testutil

import (
	"errors"
	"os"
	"testing"

	"github.com/peerd/peerd/internal/netutil"
)

// RequireRoot skips tb unless it runs as root; why says what needs it
// (e.g. "loads eBPF programs").
func RequireRoot(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skipf("needs root: %s", why)
	}
}

// SkipIfNotSupported skips tb when err matches netutil.ErrNotSupported
// (re-exported as dataplane.ErrNotSupported), with err as the reason. The
// bare sentinel fails tb instead: an error that does not say which feature
// is missing is a bug. Any other error, or nil, is left to the caller.
func SkipIfNotSupported(tb testing.TB, err error) {
	tb.Helper()
	if err == netutil.ErrNotSupported { // the bare sentinel, on purpose
		tb.Fatal("unwrapped ErrNotSupported: wrap it with the missing feature's name")
	}
	if errors.Is(err, netutil.ErrNotSupported) {
		tb.Skipf("not supported: %v", err)
	}
}
