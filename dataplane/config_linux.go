package dataplane

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// checkNetns verifies that path is a network namespace file.
func checkNetns(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("dataplane: netns %s: %w", path, err)
	}
	defer f.Close()
	t, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil {
		return fmt.Errorf("dataplane: %s is not a namespace file: %w", path, err)
	}
	if t != unix.CLONE_NEWNET {
		return fmt.Errorf("dataplane: %s is not a network namespace", path)
	}
	return nil
}

// checkCgroup verifies that path is a cgroup v2 directory and, unless
// allowRoot, not the root of its hierarchy.
func checkCgroup(path string, allowRoot bool) error {
	path = filepath.Clean(path)
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return fmt.Errorf("dataplane: cgroup %s: %w", path, err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("dataplane: %s is not a cgroup v2 directory", path)
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("dataplane: cgroup %s: %w", path, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("dataplane: cgroup %s is not a directory", path)
	}
	root, err := isMountRoot(path)
	if err != nil {
		return err
	}
	if root && !allowRoot {
		return fmt.Errorf("dataplane: %s: %w", path, ErrRootCgroup)
	}
	return nil
}

// isMountRoot reports whether path is the root of its file system mount:
// for a cgroup v2 directory, the root cgroup of the hierarchy (or of the
// caller's cgroup namespace).
func isMountRoot(path string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false, fmt.Errorf("dataplane: %s: %w", path, err)
	}
	if err := unix.Stat(filepath.Dir(path), &parent); err != nil {
		return false, fmt.Errorf("dataplane: %s: %w", filepath.Dir(path), err)
	}
	// The root cgroup's id (its kernfs inode) is 1 as well.
	return st.Dev != parent.Dev || st.Ino == parent.Ino || st.Ino == 1, nil
}

// CgroupID returns the id of the cgroup v2 directory path, the value
// bpf_get_current_cgroup_id() reports for its processes.
func CgroupID(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("cgroup id of %s: %w", path, err)
	}
	return st.Ino, nil
}
