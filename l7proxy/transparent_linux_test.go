//go:build linux

package l7proxy

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/cgroupfs"
	"github.com/peerd/peerd/internal/testutil"
)

// TestServiceOfRealNestedCgroup: a process in a container's cgroup
// <root>/kubepods/burstable/pod<uid>/ctr (real child cgroups, no eBPF)
// resolves, by the id the kernel reports for it, to the service
// registered with the pod's cgroup, and to the one registered with the
// pod's UID.
func TestServiceOfRealNestedCgroup(t *testing.T) {
	testutil.RequireRoot(t, "creates child cgroups and moves a process into one")
	if testutil.Cgroup2Root() == "" {
		t.Skip("needs a cgroup v2 mount")
	}
	base := testutil.NewCgroup(t)
	root := filepath.Join(base, "kubepods")
	pod := filepath.Join(root, "burstable", "pod"+podUID)
	ctr := testutil.NewSubCgroup(t, base, filepath.Join("kubepods", "burstable", "pod"+podUID, "ctr"))
	fd, err := syscall.Open(ctr, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// The process's cgroup as the kernel reports it.
	rel := procCgroup(t, cmd.Process.Pid)
	if !strings.HasSuffix(rel, "/kubepods/burstable/pod"+podUID+"/ctr") {
		t.Fatalf("the process runs in %q, not the container's cgroup", rel)
	}
	id, err := cgroupfs.ID(filepath.Join(testutil.Cgroup2Root(), rel))
	if err != nil {
		t.Fatal(err)
	}
	r, err := cgroupfs.NewResolver(cgroupfs.ResolverConfig{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		svc  *state.Service
	}{
		{"pod cgroup", svc("web-1", "web", CgroupMeta, pod)},
		{"pod UID", svc("billing-1", "billing", PodUIDMeta, podUID)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := cgroupProxy(t, nil, root, false, tt.svc)
			p.cfg.CgroupID, p.cfg.CgroupPath, p.cfg.CgroupRoot = cgroupfs.ID, r.Path, root
			if got, ok := p.ServiceOfCgroup(id); !ok || got != tt.svc.Service {
				t.Errorf("got %q, %v; want %q", got, ok, tt.svc.Service)
			}
		})
	}
}

// procCgroup is the cgroup v2 path of pid, relative to the hierarchy's
// root, from /proc/<pid>/cgroup.
func procCgroup(t *testing.T, pid int) string {
	t.Helper()
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rel, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return rel
		}
	}
	t.Fatalf("no cgroup v2 line for pid %d", pid)
	return ""
}

// BenchmarkServiceOfCgroup: the per-connection cost of naming a captured
// caller in a pod's container by the pod's UID (the last rule, so every
// rule runs), with real cgroups and 50 pod registrations on the node.
func BenchmarkServiceOfCgroup(b *testing.B) {
	testutil.RequireRoot(b, "creates child cgroups")
	if testutil.Cgroup2Root() == "" {
		b.Skip("needs a cgroup v2 mount")
	}
	base := testutil.NewCgroup(b)
	root := filepath.Join(base, "kubepods")
	ctr := testutil.NewSubCgroup(b, base, filepath.Join("kubepods", "burstable", "pod"+podUID, "ctr"))
	var svcs []*state.Service
	for i := range 49 {
		svcs = append(svcs, svc(fmt.Sprintf("s-%d", i), fmt.Sprintf("s%d", i), PodUIDMeta, fmt.Sprintf("00000000-0000-0000-0000-%012d", i)))
	}
	svcs = append(svcs, svc("billing-1", "billing", PodUIDMeta, podUID))
	r, err := cgroupfs.NewResolver(cgroupfs.ResolverConfig{Root: root})
	if err != nil {
		b.Fatal(err)
	}
	st, err := state.NewStore()
	if err != nil {
		b.Fatal(err)
	}
	for i, s := range svcs {
		if err := st.Register(uint64(1+i), &state.RegisterRequest{Node: &state.Node{Node: "n", Address: "127.0.0.1"}, Service: s}); err != nil {
			b.Fatal(err)
		}
	}
	p := &Proxy{cfg: Config{NodeName: "n", View: func() *state.Store { return st }, CgroupID: cgroupfs.ID, CgroupPath: r.Path, CgroupRoot: root}}
	p.log = slog.New(slog.DiscardHandler)
	id, err := cgroupfs.ID(ctr)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if s, ok := p.ServiceOfCgroup(id); !ok || s != "billing" {
			b.Fatalf("got %q, %v", s, ok)
		}
	}
}
