package dataplane

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/peerd/peerd/internal/cgroupfs"
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
	d, err := cgroupfs.Stat(path)
	if err != nil {
		return fmt.Errorf("dataplane: %w", err)
	}
	if d.Root && !allowRoot {
		return fmt.Errorf("dataplane: %s: %w", filepath.Clean(path), ErrRootCgroup)
	}
	return nil
}

// CgroupID returns the id of the cgroup v2 directory path, the value
// bpf_get_current_cgroup_id() reports for its processes: cgroupfs.ID, kept
// here for the dataplane's callers.
func CgroupID(path string) (uint64, error) { return cgroupfs.ID(path) }
