package dataplane

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The privileged tests follow the project's rules: programs attach only to
// a child cgroup created per test (never the cgroup v2 root), only helper
// subprocesses are moved into it, network traffic stays on the loopback of
// network namespaces the tests create, and pins live under a per-test
// bpffs directory that is cleaned up.

const helperEnv = "PEERD_DATAPLANE_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Args))
	}
	os.Exit(m.Run())
}

func randName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// requireRoot skips t unless it can do real eBPF work here.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads eBPF programs, creates cgroups, network namespaces and bpffs pins")
	}
	var fs unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &fs); err != nil || fs.Type != unix.BPF_FS_MAGIC {
		if err := unix.Mount("bpf", "/sys/fs/bpf", "bpf", 0, ""); err != nil {
			t.Skipf("needs bpffs at /sys/fs/bpf: mount failed: %v", err)
		}
	}
	if cgroup2Root(t) == "" {
		t.Skip("needs a cgroup v2 mount")
	}
}

// cgroup2Root finds the cgroup v2 mount point (/sys/fs/cgroup/unified on
// hybrid hosts, /sys/fs/cgroup on unified ones).
func cgroup2Root(t testing.TB) string {
	t.Helper()
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

// newCgroup creates a child cgroup for this test and removes it afterwards
// (after moving back any process still in it).
func newCgroup(t testing.TB) string {
	t.Helper()
	root := cgroup2Root(t)
	dir := filepath.Join(root, randName("peerd-test-"))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	t.Cleanup(func() {
		if procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
			for _, pid := range strings.Fields(string(procs)) {
				_ = os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(pid), 0)
			}
		}
		for i := 0; i < 50; i++ {
			if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("could not remove cgroup %s", dir)
	})
	return dir
}

// newPinDir returns a per-test bpffs directory, cleaned up afterwards.
func newPinDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join("/sys/fs/bpf", randName("peerd-test-"))
	t.Cleanup(func() {
		if err := Cleanup(dir); err != nil {
			t.Errorf("cleanup %s: %v", dir, err)
		}
	})
	return dir
}

// netns is a goroutine locked to an OS thread that lives in a private
// network namespace; run executes functions there. Sockets created inside
// stay in the namespace; processes started inside inherit it.
type netns struct {
	fns  chan func()
	path string
}

func newNetns(t testing.TB) *netns {
	t.Helper()
	n := &netns{fns: make(chan func())}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread exits with the goroutine, so the
		// namespace cannot leak to other goroutines.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		n.path = fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		errc <- err
		if err != nil {
			return
		}
		for fn := range n.fns {
			fn()
		}
	}()
	if err := <-errc; err != nil {
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() { close(n.fns) })
	return n
}

func (n *netns) run(fn func()) {
	done := make(chan struct{})
	n.fns <- func() { defer close(done); fn() }
	<-done
}

// helper is a subprocess (this test binary re-executed) that waits for
// "go" on stdin before doing anything, so the test can first move it into a
// cgroup.
type helper struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

// startHelper starts a helper in ns (the caller's netns when nil). If
// cgroup is not empty, it is moved there before it starts.
func startHelper(t testing.TB, ns *netns, cgroup, mode string, args ...string) *helper {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: exec.Command(exe, args...)}
	h.cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	h.cmd.Stderr = os.Stderr
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if h.in, err = h.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := func() { err = h.cmd.Start() }
	if ns != nil {
		ns.run(start)
	} else {
		start()
	}
	if err != nil {
		t.Fatalf("start helper: %v", err)
	}
	t.Cleanup(func() {
		_ = h.in.Close()
		_ = h.cmd.Process.Kill()
		_ = h.cmd.Wait()
	})
	h.lines = make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
	}()
	if cgroup != "" {
		pid := strconv.Itoa(h.cmd.Process.Pid)
		if err := os.WriteFile(filepath.Join(cgroup, "cgroup.procs"), []byte(pid), 0); err != nil {
			t.Fatalf("move helper into %s: %v", cgroup, err)
		}
	}
	h.send(t, "go")
	return h
}

func (h *helper) send(t testing.TB, line string) {
	t.Helper()
	if _, err := io.WriteString(h.in, line+"\n"); err != nil {
		t.Fatalf("write to helper: %v", err)
	}
}

// recv returns the helper's next output line.
func (h *helper) recv(t testing.TB) string {
	t.Helper()
	select {
	case l, ok := <-h.lines:
		if !ok {
			t.Fatal("helper exited")
		}
		return l
	case <-time.After(20 * time.Second):
		t.Fatal("helper timed out")
	}
	return ""
}
