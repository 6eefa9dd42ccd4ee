package dataplane

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/peerd/peerd/internal/testutil"
)

// The privileged tests follow the project's rules: programs attach only to
// a child cgroup created per test (testutil.NewCgroup, never the cgroup v2
// root), only helper subprocesses are moved into it, network traffic stays
// on the loopback of network namespaces the tests create
// (testutil.NewNetns), and pins live under a per-test bpffs directory that
// is cleaned up. testutil.RequireBPF skips them without root.

const helperEnv = "PEERD_DATAPLANE_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Args))
	}
	os.Exit(m.Run())
}

// newPinDir returns a per-test bpffs directory, cleaned up afterwards.
func newPinDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join("/sys/fs/bpf", testutil.UniqueName("peerd-test-"))
	t.Cleanup(func() {
		if err := Cleanup(dir); err != nil {
			t.Errorf("cleanup %s: %v", dir, err)
		}
	})
	return dir
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
func startHelper(t testing.TB, ns *testutil.Netns, cgroup, mode string, args ...string) *helper {
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
		ns.Run(start)
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

// load is New followed by Start.
func load(cfg Config) (*Dataplane, error) {
	dp, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := dp.Start(); err != nil {
		return nil, err
	}
	return dp, nil
}
