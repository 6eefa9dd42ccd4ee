package cgroupfs

import (
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"testing"
	"testing/fstest"
	"time"
)

// fakeTree is a cgroup tree in memory: the walked file system and the id
// of each directory.
type fakeTree struct {
	mu    sync.Mutex
	fs    fstest.MapFS
	ids   map[string]uint64
	stats int
}

func newFakeTree(dirs map[string]uint64) *fakeTree {
	t := &fakeTree{fs: fstest.MapFS{}, ids: map[string]uint64{}}
	for d, id := range dirs {
		t.add(d, id)
	}
	return t
}

func (t *fakeTree) add(dir string, id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fs[dir[1:]] = &fstest.MapFile{Mode: fs.ModeDir | 0o755}
	t.fs[dir[1:]+"/cgroup.procs"] = &fstest.MapFile{}
	t.ids[dir] = id
}

func (t *fakeTree) remove(dir string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.fs, dir[1:])
	delete(t.fs, dir[1:]+"/cgroup.procs")
	delete(t.ids, dir)
}

func (t *fakeTree) id(path string) (uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stats++
	if id, ok := t.ids[path]; ok {
		return id, nil
	}
	return 0, fmt.Errorf("cgroup id of %s: %w", path, fs.ErrNotExist)
}

func (t *fakeTree) statCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stats
}

func TestResolverPath(t *testing.T) {
	tree := newFakeTree(map[string]uint64{
		"/cg":           10,
		"/cg/pod1":      11,
		"/cg/pod1/ctr1": 12,
		"/cg/pod2":      13,
		"/outside":      20,
	})
	now := time.Unix(1000, 0)
	r, err := NewResolver(ResolverConfig{Root: "/cg/", FS: tree.fs, ID: tree.id, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if r.Root() != "/cg" {
		t.Errorf("root %q, want /cg", r.Root())
	}
	for id, want := range map[uint64]string{10: "/cg", 12: "/cg/pod1/ctr1", 13: "/cg/pod2"} {
		if got, err := r.Path(id); err != nil || got != want {
			t.Errorf("Path(%d) = %q, %v; want %q", id, got, err, want)
		}
	}
	if r.Len() != 4 {
		t.Errorf("%d ids cached, want the 4 under the root", r.Len())
	}

	// A hit costs one check of the cached path, no walk.
	before := tree.statCount()
	if _, err := r.Path(12); err != nil {
		t.Fatal(err)
	}
	if n := tree.statCount() - before; n != 1 {
		t.Errorf("a cached lookup made %d stats, want 1", n)
	}

	// Outside the root: not found, and not walked for again within MissTTL.
	if _, err := r.Path(20); !errors.Is(err, ErrNotFound) {
		t.Errorf("Path of a cgroup outside the root: %v, want ErrNotFound", err)
	}
	before = tree.statCount()
	if _, err := r.Path(20); !errors.Is(err, ErrNotFound) {
		t.Errorf("second miss: %v", err)
	}
	if n := tree.statCount() - before; n != 0 {
		t.Errorf("a repeated miss within MissTTL made %d stats, want none", n)
	}

	// A cgroup created after the walk is found by the next one.
	tree.add("/cg/pod2/ctr2", 14)
	if got, err := r.Path(14); err != nil || got != "/cg/pod2/ctr2" {
		t.Errorf("new cgroup: %q, %v", got, err)
	}

	// A removed cgroup is not answered from the cache.
	tree.remove("/cg/pod2/ctr2")
	if got, err := r.Path(14); !errors.Is(err, ErrNotFound) {
		t.Errorf("removed cgroup: %q, %v; want ErrNotFound", got, err)
	}
	// ... nor a renamed one's old path.
	tree.remove("/cg/pod1/ctr1")
	tree.add("/cg/pod1/ctr1-renamed", 12)
	if got, err := r.Path(12); err != nil || got != "/cg/pod1/ctr1-renamed" {
		t.Errorf("renamed cgroup: %q, %v", got, err)
	}

	// An id that missed is looked for again once MissTTL has passed.
	tree.add("/cg/late", 20)
	if _, err := r.Path(20); !errors.Is(err, ErrNotFound) {
		t.Errorf("within MissTTL: %v, want the remembered miss", err)
	}
	now = now.Add(2 * time.Second)
	if got, err := r.Path(20); err != nil || got != "/cg/late" {
		t.Errorf("after MissTTL: %q, %v", got, err)
	}
}

func TestResolverBounded(t *testing.T) {
	dirs := map[string]uint64{"/cg": 1}
	for i := range 100 {
		dirs[fmt.Sprintf("/cg/c%03d", i)] = uint64(100 + i)
	}
	tree := newFakeTree(dirs)
	r, err := NewResolver(ResolverConfig{Root: "/cg", FS: tree.fs, ID: tree.id, MaxEntries: 10})
	if err != nil {
		t.Fatal(err)
	}
	// The wanted id is always found, whatever the bound.
	for _, id := range []uint64{199, 150, 1} {
		want := "/cg"
		if id != 1 {
			want = fmt.Sprintf("/cg/c%03d", id-100)
		}
		if got, err := r.Path(id); err != nil || got != want {
			t.Errorf("Path(%d) = %q, %v; want %q", id, got, err, want)
		}
		if n := r.Len(); n > 11 {
			t.Errorf("%d ids cached, want at most MaxEntries+1", n)
		}
	}
	for i := range 50 {
		_, _ = r.Path(uint64(10_000 + i))
	}
	r.mu.Lock()
	misses := len(r.misses)
	r.mu.Unlock()
	if misses > 10 {
		t.Errorf("%d misses remembered, want at most MaxEntries", misses)
	}
}

func TestResolverConcurrentMisses(t *testing.T) {
	tree := newFakeTree(map[string]uint64{"/cg": 1, "/cg/a": 2, "/cg/b": 3})
	r, err := NewResolver(ResolverConfig{Root: "/cg", FS: tree.fs, ID: tree.id})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := uint64(2 + i%2)
			if p, err := r.Path(id); err != nil || p == "" {
				t.Errorf("Path(%d): %q, %v", id, p, err)
			}
		}()
	}
	wg.Wait()
}

func TestNewResolverRefuses(t *testing.T) {
	for _, cfg := range []ResolverConfig{{}, {Root: "kubepods"}, {Root: "/cg", MaxEntries: -1}} {
		if _, err := NewResolver(cfg); err == nil {
			t.Errorf("NewResolver(%+v) accepted", cfg)
		}
	}
	tree := newFakeTree(map[string]uint64{"/cg": 1})
	r, _ := NewResolver(ResolverConfig{Root: "/missing", FS: tree.fs, ID: tree.id})
	if _, err := r.Path(1); err == nil || errors.Is(err, ErrNotFound) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing root: %v, want a walk error matching fs.ErrNotExist", err)
	}
}
