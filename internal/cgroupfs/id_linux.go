//go:build linux

package cgroupfs

import (
	"fmt"
	"path/filepath"
	"syscall"
)

// cgroup2Magic is CGROUP2_SUPER_MAGIC (linux/magic.h).
const cgroup2Magic = 0x63677270

// ID returns the id of the cgroup v2 directory path: its inode, which is
// the value bpf_get_current_cgroup_id() reports for its processes.
func ID(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("cgroup id of %s: %w", path, err)
	}
	return st.Ino, nil
}

// Stat checks that path is a cgroup v2 directory and says whether it is
// the root of its hierarchy. A missing path gives an error matching
// fs.ErrNotExist; another file system one matching ErrNotCgroup2.
func Stat(path string) (Dir, error) {
	path = filepath.Clean(path)
	var fs syscall.Statfs_t
	if err := syscall.Statfs(path, &fs); err != nil {
		return Dir{}, fmt.Errorf("cgroup %s: %w", path, err)
	}
	if fs.Type != cgroup2Magic {
		return Dir{}, fmt.Errorf("cgroup %s: %w", path, ErrNotCgroup2)
	}
	var st, parent syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return Dir{}, fmt.Errorf("cgroup %s: %w", path, err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return Dir{}, fmt.Errorf("cgroup %s: not a directory: %w", path, ErrNotCgroup2)
	}
	if err := syscall.Stat(filepath.Dir(path), &parent); err != nil {
		return Dir{}, fmt.Errorf("cgroup %s: parent: %w", path, err)
	}
	// The root of a mount has another device than its parent (or is "/");
	// the root cgroup's id (its kernfs inode) is 1 as well.
	root := st.Dev != parent.Dev || st.Ino == parent.Ino || st.Ino == 1
	return Dir{ID: st.Ino, Root: root}, nil
}
