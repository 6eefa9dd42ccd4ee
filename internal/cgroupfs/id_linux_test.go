//go:build linux

package cgroupfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/peerd/peerd/internal/testutil"
)

// TestRealCgroups resolves real nested child cgroups (no eBPF): the ids
// Stat and ID give, the resolver's walk, and Stat's verdicts on the
// hierarchy's root, a missing path and a directory of another file system.
func TestRealCgroups(t *testing.T) {
	testutil.RequireRoot(t, "creates child cgroups")
	croot := testutil.Cgroup2Root()
	if croot == "" {
		t.Skip("needs a cgroup v2 mount")
	}
	root := testutil.NewCgroup(t)
	ctr := filepath.Join(root, "pod1", "ctr")
	if err := os.MkdirAll(ctr, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(ctr); _ = os.Remove(filepath.Dir(ctr)) })

	d, err := Stat(ctr)
	if err != nil || d.Root {
		t.Fatalf("Stat(%s) = %+v, %v; want a non-root cgroup", ctr, d, err)
	}
	id, err := ID(ctr)
	if err != nil || id != d.ID || id == 0 {
		t.Fatalf("ID(%s) = %d, %v; Stat said %d", ctr, id, err, d.ID)
	}
	r, err := NewResolver(ResolverConfig{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Path(id); err != nil || got != ctr {
		t.Fatalf("Path(%d) = %q, %v; want %q", id, got, err, ctr)
	}
	if d, err := Stat(croot); err != nil || !d.Root {
		t.Errorf("Stat(%s) = %+v, %v; want the root", croot, d, err)
	}
	if _, err := Stat(filepath.Join(root, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of a missing cgroup: %v, want fs.ErrNotExist", err)
	}
	if _, err := Stat(t.TempDir()); !errors.Is(err, ErrNotCgroup2) {
		t.Errorf("Stat of a temporary directory: %v, want ErrNotCgroup2", err)
	}
	// Removed: the resolver no longer answers it.
	if err := os.Remove(ctr); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Path(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("removed cgroup: %q, %v; want ErrNotFound", got, err)
	}
}
