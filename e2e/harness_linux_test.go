//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// requireRoot skips t unless the test can create network namespaces.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root to create network namespaces, veth pairs and bridges (uid %d)", os.Geteuid())
	}
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
		t.Fatalf("new network namespace: %v", err)
	}
	t.Cleanup(func() { close(n.fns) })
	return n
}

func (n *netns) run(fn func()) {
	done := make(chan struct{})
	n.fns <- func() { defer close(done); fn() }
	<-done
}

// dial opens a TCP connection from inside the namespace.
func (n *netns) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var (
		c   net.Conn
		err error
	)
	n.run(func() { c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr) })
	return c, err
}

// lan is one cluster's network: a bridge in a namespace of its own, and the
// /24 its hosts take addresses from.
type lan struct {
	ns     *netns
	prefix string // "198.18.1." — hosts get .1, .2, ...
	next   int
}

// newLAN makes a bridge for hosts with addresses prefix+N/24. The prefixes
// used are in 198.18.0.0/15 (RFC 2544, for benchmarking labs), and exist
// only inside the test's namespaces.
func newLAN(t testing.TB, prefix string) *lan {
	t.Helper()
	l := &lan{ns: newNetns(t), prefix: prefix}
	var err error
	l.ns.run(func() {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
		if err = netlink.LinkAdd(br); err == nil {
			err = netlink.LinkSetUp(br)
		}
	})
	if err != nil {
		t.Fatalf("create bridge for %s0/24: %v", prefix, err)
	}
	return l
}

// host is a namespace on a LAN with one address, on eth0.
type host struct {
	name string
	ip   string
	ns   *netns
}

// addHost makes a namespace wired to the bridge by a veth pair.
func (l *lan) addHost(t testing.TB, name string) *host {
	t.Helper()
	l.next++
	h := &host{name: name, ip: fmt.Sprintf("%s%d", l.prefix, l.next), ns: newNetns(t)}
	peer := fmt.Sprintf("v-%s", name)
	lanFd, err := unix.Open(l.ns.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open the LAN's namespace: %v", err)
	}
	defer unix.Close(lanFd)
	h.ns.run(func() {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: peer}
		if err = netlink.LinkAdd(veth); err != nil {
			err = fmt.Errorf("add veth: %w", err)
			return
		}
		var p netlink.Link
		if p, err = netlink.LinkByName(peer); err != nil {
			return
		}
		if err = netlink.LinkSetNsFd(p, lanFd); err != nil {
			err = fmt.Errorf("move %s to the LAN: %w", peer, err)
			return
		}
		var addr *netlink.Addr
		if addr, err = netlink.ParseAddr(h.ip + "/24"); err != nil {
			return
		}
		if err = netlink.AddrAdd(veth, addr); err != nil {
			err = fmt.Errorf("address %s: %w", h.ip, err)
			return
		}
		err = netlink.LinkSetUp(veth)
	})
	if err != nil {
		t.Fatalf("host %s: %v", name, err)
	}
	l.ns.run(func() {
		var p, br netlink.Link
		if p, err = netlink.LinkByName(peer); err != nil {
			return
		}
		if br, err = netlink.LinkByName("br0"); err != nil {
			return
		}
		if err = netlink.LinkSetMaster(p, br); err == nil {
			err = netlink.LinkSetUp(p)
		}
	})
	if err != nil {
		t.Fatalf("attach %s to the bridge: %v", name, err)
	}
	return h
}

// buildPeerd builds cmd/peerd once per test binary run.
var buildOnce = struct {
	sync.Once
	path string
	err  error
}{}

func peerdBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := filepath.Abs("..")
		if err != nil {
			buildOnce.err = err
			return
		}
		dir, err := os.MkdirTemp("", "peerd-e2e-bin-")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "peerd")
		cmd := exec.Command("go", "build", "-o", buildOnce.path, "./cmd/peerd")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildOnce.err = fmt.Errorf("go build ./cmd/peerd: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

// node is a real peerd process on a host.
type node struct {
	*host
	args []string
	cmd  *exec.Cmd
	done chan struct{}
	http *http.Client
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the test's
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startNode runs `peerd agent args...` inside h's namespace with its own
// data directory. The process is killed when the test ends; its log is
// printed if the test failed.
func startNode(t testing.TB, h *host, args ...string) *node {
	t.Helper()
	n := &node{host: h, done: make(chan struct{})}
	n.http = &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DialContext: h.ns.dial, DisableKeepAlives: true},
	}
	dataDir := t.TempDir()
	n.args = append([]string{"agent", "-node", h.name, "-data-dir", dataDir, "-bind-addr", h.ip}, args...)
	logs := &syncBuffer{}
	cmd := exec.Command(peerdBinary(t), n.args...)
	cmd.Stdout, cmd.Stderr = logs, logs
	// The namespace's thread outlives the process (it ends at cleanup), so
	// the death signal fires only if the test binary dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var err error
	h.ns.run(func() { err = cmd.Start() })
	if err != nil {
		t.Fatalf("start peerd on %s: %v", h.name, err)
	}
	n.cmd = cmd
	go func() { _ = cmd.Wait(); close(n.done) }()
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			t.Logf("--- log of %s (peerd %s)\n%s", h.name, strings.Join(n.args, " "), logs.String())
		}
	})
	return n
}

// kill sends SIGKILL and waits for the process to be gone.
func (n *node) kill() {
	_ = n.cmd.Process.Kill()
	<-n.done
}

// getJSON GETs path from the node's HTTP API (127.0.0.1:8500 in its
// namespace) and decodes the answer into v.
func (n *node) getJSON(ctx context.Context, path string, v any) error {
	return n.do(ctx, http.MethodGet, path, nil, v)
}

func (n *node) do(ctx context.Context, method, path string, body io.Reader, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://127.0.0.1:8500"+path, body)
	if err != nil {
		return err
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s on %s: %s: %s", method, path, n.name, resp.Status, bytes.TrimSpace(data))
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(data, v)
}

// eventually retries check every interval until it returns nil or timeout
// passes, then fails t with the last error.
func eventually(t testing.TB, timeout, interval time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(interval)
	}
}
