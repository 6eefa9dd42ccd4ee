//go:build linux

package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerd/peerd/internal/testutil"
)

// TestCheckCgroupPath: a -cgroup-path that does not exist, is not a
// cgroup or is the hierarchy's root (without -allow-root-cgroup) is
// refused at start-up with the flag and what to set. Nothing is attached
// here: the check runs on its own.
func TestCheckCgroupPath(t *testing.T) {
	if err := checkCgroupPath(t.TempDir(), false); err == nil || !strings.Contains(err.Error(), "-cgroup-path") ||
		!strings.Contains(err.Error(), "not a cgroup v2 directory") {
		t.Errorf("a temporary directory: %v", err)
	}
	root := testutil.Cgroup2Root()
	if root == "" {
		t.Skip("needs a cgroup v2 mount for the rest")
	}
	if err := checkCgroupPath(root, false); err == nil || !strings.Contains(err.Error(), "-allow-root-cgroup") ||
		!strings.Contains(err.Error(), "root of the cgroup hierarchy") {
		t.Errorf("the root cgroup: %v, want a refusal naming -allow-root-cgroup", err)
	}
	if err := checkCgroupPath(filepath.Join(root, "."), false); err == nil {
		t.Error("root/. accepted")
	}
	if err := checkCgroupPath(root, true); err != nil {
		t.Errorf("the root cgroup with -allow-root-cgroup: %v", err)
	}
	missing := filepath.Join(root, testutil.UniqueName("peerd-missing-"))
	for _, tt := range []struct{ path, want string }{
		{missing, "-cgroup-path " + missing + " does not exist: create it"},
		{filepath.Join(missing, "kubepods"), "under kubepods.slice with the systemd cgroup driver and under kubepods with cgroupfs"},
		{filepath.Join(missing, "kubepods.slice"), "under kubepods.slice with the systemd cgroup driver"},
	} {
		if err := checkCgroupPath(tt.path, false); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want it to say %q", tt.path, err, tt.want)
		}
	}

	testutil.RequireRoot(t, "creates child cgroups")
	cg := testutil.NewCgroup(t)
	if err := checkCgroupPath(cg, false); err != nil {
		t.Errorf("a child cgroup: %v", err)
	}
	// The kubelet's other driver: the hint names the directory there is.
	slice := filepath.Join(cg, "kubepods.slice")
	if err := os.Mkdir(slice, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(slice) })
	err := checkCgroupPath(filepath.Join(cg, "kubepods"), false)
	if want := "uses the systemd cgroup driver: set -cgroup-path " + slice; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("kubepods on a systemd-driver node: %v, want %q", err, want)
	}
}
