package testutil

import (
	"fmt"
	"testing"

	"github.com/peerd/peerd/internal/netutil"
)

// recorder is a testing.TB that records skips and failures instead of
// acting on them; Skipf and Fatal stop the helper as the real ones would.
type recorder struct {
	testing.TB
	skipped, failed bool
}

func (r *recorder) Helper()              {}
func (r *recorder) Skipf(string, ...any) { r.skipped = true; panic(r) }
func (r *recorder) Fatal(...any)         { r.failed = true; panic(r) }

func run(err error) (r *recorder) {
	r = &recorder{}
	defer func() {
		if p := recover(); p != nil && p != r {
			panic(p)
		}
	}()
	SkipIfNotSupported(r, err)
	return r
}

func TestSkipIfNotSupported(t *testing.T) {
	tests := []struct {
		name          string
		err           error
		skip, failure bool
	}{
		{"nil", nil, false, false},
		{"other error", fmt.Errorf("load: permission denied"), false, false},
		{"wrapped", fmt.Errorf("kernel lacks sk_lookup: %w", netutil.ErrNotSupported), true, false},
		{"bare sentinel", netutil.ErrNotSupported, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(tt.err)
			if r.skipped != tt.skip || r.failed != tt.failure {
				t.Errorf("got skipped=%v failed=%v, want skipped=%v failed=%v", r.skipped, r.failed, tt.skip, tt.failure)
			}
		})
	}
}
