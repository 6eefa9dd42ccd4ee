package testutil

import (
	"testing"
	"time"
)

// WaitFor polls cond every 10 ms until it holds, and fails tb when timeout
// passes first, naming what it waited for. cond should be a cheap read.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Eventually retries f every 50 ms until it returns nil, and fails tb with
// f's last error when timeout passes first. f may act (a request, a
// process): it says in its error what it last saw.
func Eventually(tb testing.TB, timeout time.Duration, what string, f func() error) {
	tb.Helper()
	EventuallyEvery(tb, timeout, 50*time.Millisecond, what, f)
}

// EventuallyEvery is Eventually retrying every interval, for checks that
// cost more (several requests to real processes).
func EventuallyEvery(tb testing.TB, timeout, interval time.Duration, what string, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(interval)
	}
	tb.Fatalf("%s: still failing after %s: %v", what, timeout, err)
}
