package cgroupfs

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ResolverConfig configures a Resolver.
type ResolverConfig struct {
	// Root is the cgroup v2 directory whose subtree is resolved (the
	// captured cgroup, -cgroup-path). Required, absolute.
	Root string
	// MaxEntries bounds the ids kept from a walk, and the ids remembered
	// as not found. 0 = 65536.
	MaxEntries int
	// MissTTL is how long an id a walk did not find is answered
	// ErrNotFound without walking again: a burst of connections from a
	// cgroup outside the root costs one walk. 0 = one second.
	MissTTL time.Duration
	// Now is the clock; nil = time.Now.
	Now func() time.Time
	// ID returns the id of a directory; nil = the package's ID (tests
	// give a fake file system's).
	ID func(path string) (uint64, error)
	// FS is the file system walked, rooted at "/"; nil = the host's.
	FS fs.FS
}

// Resolver finds the directory of a cgroup id under its root. It walks
// the subtree on a miss and keeps every id it saw (up to MaxEntries); a
// cached path is checked (its id again) before it is returned, so a
// removed or renamed cgroup is never answered from the cache. Its methods
// are safe for concurrent use; at most one walk runs at a time, and
// callers that missed while it ran use its result.
type Resolver struct {
	cfg  ResolverConfig
	fsys fs.FS

	walkMu sync.Mutex // held for a walk

	mu     sync.Mutex // guards what follows
	byID   map[uint64]string
	misses map[uint64]time.Time
	walks  uint64 // completed walks
}

// NewResolver returns a Resolver for cfg.Root.
func NewResolver(cfg ResolverConfig) (*Resolver, error) {
	if cfg.Root == "" || !filepath.IsAbs(cfg.Root) {
		return nil, fmt.Errorf("cgroup resolver: root %q: want an absolute cgroup v2 directory", cfg.Root)
	}
	cfg.Root = filepath.Clean(cfg.Root)
	if cfg.MaxEntries < 0 || cfg.MissTTL < 0 {
		return nil, fmt.Errorf("cgroup resolver: negative MaxEntries (%d) or MissTTL (%v)", cfg.MaxEntries, cfg.MissTTL)
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = 65536
	}
	if cfg.MissTTL == 0 {
		cfg.MissTTL = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ID == nil {
		cfg.ID = ID
	}
	fsys := cfg.FS
	if fsys == nil {
		fsys = os.DirFS("/")
	}
	return &Resolver{cfg: cfg, fsys: fsys, byID: map[uint64]string{}, misses: map[uint64]time.Time{}}, nil
}

// Root is the directory whose subtree the resolver resolves.
func (r *Resolver) Root() string { return r.cfg.Root }

// Path returns the directory under Root of the cgroup with id, or an
// error matching ErrNotFound.
func (r *Resolver) Path(id uint64) (string, error) {
	r.mu.Lock()
	p, ok := r.byID[id]
	gen := r.walks
	r.mu.Unlock()
	if ok {
		if r.valid(p, id) {
			return p, nil
		}
		r.mu.Lock()
		if r.byID[id] == p {
			delete(r.byID, id)
		}
		r.mu.Unlock()
	} else if r.recentMiss(id) {
		return "", r.notFound(id)
	}

	r.walkMu.Lock()
	defer r.walkMu.Unlock()
	r.mu.Lock()
	if r.walks != gen { // a walk finished while this call waited
		p, ok := r.byID[id]
		_, missed := r.misses[id]
		r.mu.Unlock()
		if ok && r.valid(p, id) {
			return p, nil
		}
		if missed {
			return "", r.notFound(id)
		}
	} else {
		r.mu.Unlock()
	}
	found, err := r.walk(id)
	if err != nil {
		return "", err
	}
	if found == "" {
		return "", r.notFound(id)
	}
	return found, nil
}

func (r *Resolver) notFound(id uint64) error {
	return fmt.Errorf("cgroup id %d under %s: %w", id, r.cfg.Root, ErrNotFound)
}

func (r *Resolver) valid(path string, id uint64) bool {
	got, err := r.cfg.ID(path)
	return err == nil && got == id
}

func (r *Resolver) recentMiss(id uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.misses[id]
	return ok && r.cfg.Now().Sub(t) < r.cfg.MissTTL
}

// walk lists the subtree, replaces the cache with what it found, and
// returns the path of want ("" if absent). Called with walkMu held.
func (r *Resolver) walk(want uint64) (string, error) {
	start := strings.TrimPrefix(r.cfg.Root, "/") // fs.FS paths are relative to "/"
	if start == "" {
		start = "."
	}
	byID := map[uint64]string{}
	found := ""
	err := fs.WalkDir(r.fsys, start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start {
				return err
			}
			return nil // a cgroup removed during the walk
		}
		if !d.IsDir() {
			return nil
		}
		abs := "/" + p
		if p == "." {
			abs = "/"
		}
		id, err := r.cfg.ID(abs)
		if err != nil {
			return nil
		}
		if id == want {
			found = abs
		}
		if len(byID) < r.cfg.MaxEntries || id == want {
			byID[id] = abs
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("walk the cgroups under %s: %w", r.cfg.Root, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byID = byID
	r.walks++
	if found == "" {
		if len(r.misses) >= r.cfg.MaxEntries {
			r.misses = map[uint64]time.Time{}
		}
		r.misses[want] = r.cfg.Now()
	} else {
		delete(r.misses, want)
	}
	return found, nil
}

// Len is the number of ids cached.
func (r *Resolver) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byID)
}
