package testutil

import (
	"errors"
	"testing"
	"time"
)

func TestWaitForAndEventually(t *testing.T) {
	n := 0
	WaitFor(t, time.Second, "the third call", func() bool { n++; return n >= 3 })
	if n != 3 {
		t.Errorf("got %d calls, want 3", n)
	}
	m := 0
	Eventually(t, 2*time.Second, "the second call", func() error {
		if m++; m < 2 {
			return errors.New("not yet")
		}
		return nil
	})
	if m != 2 {
		t.Errorf("got %d calls, want 2", m)
	}
}
