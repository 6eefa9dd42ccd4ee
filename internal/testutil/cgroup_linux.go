package testutil

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// RequireBPF skips tb unless it can do real eBPF work here: root, a bpffs
// at /sys/fs/bpf (mounted if missing) and a cgroup v2 hierarchy.
func RequireBPF(tb testing.TB) {
	tb.Helper()
	RequireRoot(tb, "loads eBPF programs, creates cgroups, network namespaces and bpffs pins")
	var fs unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &fs); err != nil || fs.Type != unix.BPF_FS_MAGIC {
		if err := unix.Mount("bpf", "/sys/fs/bpf", "bpf", 0, ""); err != nil {
			tb.Skipf("needs bpffs at /sys/fs/bpf: mount failed: %v", err)
		}
	}
	if Cgroup2Root() == "" {
		tb.Skip("needs a cgroup v2 mount")
	}
}

// Cgroup2Root returns the cgroup v2 mount point (/sys/fs/cgroup/unified on
// hybrid hosts, /sys/fs/cgroup on unified ones), or "" without one.
func Cgroup2Root() string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		if f := strings.Fields(post); len(f) > 0 && f[0] == "cgroup2" {
			if pf := strings.Fields(pre); len(pf) >= 5 {
				return pf[4]
			}
		}
	}
	return ""
}

// OwnCgroup returns the cgroup v2 directory the calling process runs in.
func OwnCgroup() (string, error) {
	root := Cgroup2Root()
	if root == "" {
		return "", errors.New("no cgroup v2 mount")
	}
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rel, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return filepath.Join(root, rel), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no cgroup v2 line in /proc/self/cgroup")
}

// NewCgroup creates a new child of the cgroup v2 root for tb (never the
// root itself: programs attached there would see every process) and
// removes it afterwards, first moving any process still in it back to the
// cgroup the test runs in. Call RequireBPF (or RequireRoot) first.
func NewCgroup(tb testing.TB) string {
	tb.Helper()
	root := Cgroup2Root()
	if root == "" {
		tb.Fatal("new cgroup: no cgroup v2 mount")
	}
	home, err := OwnCgroup()
	if err != nil {
		home = root
	}
	dir := filepath.Join(root, UniqueName("peerd-test-"))
	if err := os.Mkdir(dir, 0o755); err != nil {
		tb.Fatalf("create cgroup: %v", err)
	}
	tb.Cleanup(func() {
		if procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
			for _, pid := range strings.Fields(string(procs)) {
				_ = os.WriteFile(filepath.Join(home, "cgroup.procs"), []byte(pid), 0)
			}
		}
		removeCgroupDir(tb, dir)
	})
	return dir
}

// NewSubCgroup creates parent/rel (rel may be nested, e.g.
// "kubepods/burstable/pod<uid>/ctr") for tb and removes what it created
// afterwards, deepest first and before parent's own cleanup (retrying
// while the last processes leave). It returns the full path.
func NewSubCgroup(tb testing.TB, parent, rel string) string {
	tb.Helper()
	dir := filepath.Join(parent, rel)
	var made []string
	for d := dir; d != parent && d != filepath.Dir(d); d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		made = append(made, d)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatalf("create cgroup %s: %v", dir, err)
	}
	tb.Cleanup(func() {
		for _, d := range made {
			removeCgroupDir(tb, d)
		}
	})
	return dir
}

func removeCgroupDir(tb testing.TB, dir string) {
	for i := 0; i < 100; i++ {
		if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Errorf("could not remove cgroup %s", dir)
}
