package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Netns is a goroutine locked to an OS thread that lives in a new network
// namespace with its loopback up; Run executes functions there. Sockets
// created inside stay in the namespace; processes started inside inherit
// it.
type Netns struct {
	fns  chan func()
	path string
}

// NewNetns creates a network namespace for tb; it goes away with its
// thread when tb ends. Needs root.
func NewNetns(tb testing.TB) *Netns {
	tb.Helper()
	n := &Netns{fns: make(chan func())}
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
		errc <- loopbackUp()
		for fn := range n.fns {
			fn()
		}
	}()
	if err := <-errc; err != nil {
		tb.Fatalf("new netns: %v", err)
	}
	tb.Cleanup(func() { close(n.fns) })
	return n
}

// Path is the namespace's file (for setns, or dataplane's InboundNetns),
// valid while tb runs.
func (n *Netns) Path() string { return n.path }

// Run calls fn in the namespace and waits for it to return.
func (n *Netns) Run(fn func()) {
	done := make(chan struct{})
	n.fns <- func() { defer close(done); fn() }
	<-done
}

func loopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

// envNetns names the test or benchmark a child started by InNewNetns runs.
const envNetns = "PEERD_TESTUTIL_NETNS"

// InNewNetns runs the calling test (or benchmark) whole in a new network
// namespace, for tests whose every goroutine must be there (an agent, a
// daemon): the test binary runs again, alone, as a child process in a new
// namespace. It returns true in the child, with the loopback up, where the
// test goes on. In the parent it returns false once the child is done (the
// caller returns): a test fails unless the child passed, its output
// logged; a benchmark's child writes straight to stdout, so its figures
// print as the benchmark's own. Needs root.
func InNewNetns(tb testing.TB) bool {
	tb.Helper()
	if os.Getenv(envNetns) == tb.Name() {
		if err := loopbackUp(); err != nil {
			tb.Fatalf("in the new netns: %v", err)
		}
		return true
	}
	pattern := "^" + regexp.QuoteMeta(tb.Name()) + "$"
	args := []string{"-test.run", pattern, "-test.v", "-test.count=1"}
	_, bench := tb.(*testing.B)
	if bench {
		args = []string{"-test.run", "^$", "-test.bench", pattern, "-test.benchtime", "1x"}
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envNetns+"="+tb.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if bench {
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			tb.Fatalf("%s failed in its network namespace: %v", tb.Name(), err)
		}
		return false
	}
	out, err := cmd.CombinedOutput()
	tb.Logf("in a new network namespace:\n%s", testLines(string(out)))
	if err != nil {
		tb.Fatalf("%s failed in its network namespace: %v", tb.Name(), err)
	}
	if !strings.Contains(string(out), "--- PASS: "+tb.Name()) {
		tb.Fatalf("%s did not pass in its network namespace (skipped?)", tb.Name())
	}
	return false
}

// testLines keeps go test's own lines of a child's output, dropping slog's.
func testLines(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "time=") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}
