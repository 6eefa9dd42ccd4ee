//go:build linux

package cgroupfs

import (
	"errors"
	"fmt"
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

// BenchmarkResolverWalk: the cost of a walk (a cold lookup) over a tree
// of real cgroups the size of a busy node's kubepods: 100 pods of 4
// containers.
func BenchmarkResolverWalk(b *testing.B) {
	testutil.RequireRoot(b, "creates child cgroups")
	if testutil.Cgroup2Root() == "" {
		b.Skip("needs a cgroup v2 mount")
	}
	root := testutil.NewCgroup(b)
	var dirs []string
	for p := range 100 {
		pod := filepath.Join(root, "burstable", fmt.Sprintf("pod%08d-0000-0000-0000-000000000000", p))
		for c := range 4 {
			d := filepath.Join(pod, fmt.Sprintf("ctr%d", c))
			if err := os.MkdirAll(d, 0o755); err != nil {
				b.Fatal(err)
			}
			dirs = append(dirs, d)
		}
		dirs = append(dirs, pod)
	}
	dirs = append(dirs, filepath.Join(root, "burstable"))
	b.Cleanup(func() {
		for _, d := range dirs {
			_ = os.Remove(d)
		}
	})
	want, err := ID(dirs[len(dirs)-3])
	if err != nil {
		b.Fatal(err)
	}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			r, _ := NewResolver(ResolverConfig{Root: root})
			if _, err := r.Path(want); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		r, _ := NewResolver(ResolverConfig{Root: root})
		for b.Loop() {
			if _, err := r.Path(want); err != nil {
				b.Fatal(err)
			}
		}
	})
}
