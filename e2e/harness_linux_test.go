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
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/peerd/peerd/internal/testutil"
)

// dialIn returns a DialContext that opens TCP connections from inside the
// namespace n.
func dialIn(n *testutil.Netns) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var (
			c   net.Conn
			err error
		)
		n.Run(func() { c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr) })
		return c, err
	}
}

// lan is one cluster's network: a bridge in a namespace of its own, and the
// /24 its hosts take addresses from.
type lan struct {
	ns     *testutil.Netns
	prefix string // "198.18.1." — hosts get .1, .2, ...
	next   int
}

// newLAN makes a bridge for hosts with addresses prefix+N/24. The prefixes
// used are in 198.18.0.0/15 (RFC 2544, for benchmarking labs), and exist
// only inside the test's namespaces.
func newLAN(t testing.TB, prefix string) *lan {
	t.Helper()
	l := &lan{ns: testutil.NewNetns(t), prefix: prefix}
	var err error
	l.ns.Run(func() {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
		if err = netlink.LinkAdd(br); err != nil {
			return
		}
		if err = netlink.LinkSetUp(br); err != nil {
			return
		}
		// The bridge's namespace is also the LAN's router (.254): a WAN
		// (newWAN) routes between two LANs through it.
		var addr *netlink.Addr
		if addr, err = netlink.ParseAddr(l.router() + "/24"); err == nil {
			err = netlink.AddrAdd(br, addr)
		}
		if err == nil {
			// /proc/sys/net is the opening thread's namespace's.
			err = os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
		}
	})
	if err != nil {
		t.Fatalf("create bridge for %s0/24: %v", prefix, err)
	}
	return l
}

// router is the LAN's gateway address, on the bridge.
func (l *lan) router() string { return l.prefix + "254" }

// host is a namespace on a LAN with one address, on eth0.
type host struct {
	name string
	ip   string
	ns   *testutil.Netns
}

// addHost makes a namespace wired to the bridge by a veth pair.
func (l *lan) addHost(t testing.TB, name string) *host {
	t.Helper()
	l.next++
	h := &host{name: name, ip: fmt.Sprintf("%s%d", l.prefix, l.next), ns: testutil.NewNetns(t)}
	peer := fmt.Sprintf("v-%s", name)
	lanFd, err := unix.Open(l.ns.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open the LAN's namespace: %v", err)
	}
	defer unix.Close(lanFd)
	h.ns.Run(func() {
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
		if err = netlink.LinkSetUp(veth); err != nil {
			return
		}
		var eth0 netlink.Link
		if eth0, err = netlink.LinkByName("eth0"); err != nil {
			return
		}
		err = netlink.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.ParseIP(l.router())})
	})
	if err != nil {
		t.Fatalf("host %s: %v", name, err)
	}
	l.ns.Run(func() {
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

// peerdBinary builds cmd/peerd for one test (the build cache makes the
// second test's build cheap).
func peerdBinary(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "peerd")
	testutil.GoBuild(t, path, "./cmd/peerd")
	return path
}

// node is a real peerd process on a host. Its process can be killed,
// stopped, restarted on the same data directory, or reloaded (SIGHUP: a
// new process, adopted here, takes over).
type node struct {
	*host
	t       testing.TB
	bin     string // the executable path (a reload runs what is there then)
	args    []string
	dataDir string
	logPath string
	token   string // X-Consul-Token of every API call ("" = none)
	http    *http.Client

	mu   sync.Mutex
	pid  int
	done chan struct{} // closed when pid has exited
}

// e2eGossipKey is the gossip key startNode gives every node unless the
// test passes -encrypt or -insecure-gossip itself.
const e2eGossipKey = "ZTJlLWdvc3NpcC1rZXktZm9yLXBlZXJkLWUyZS10c3Q="

// startNode runs `peerd agent args...` inside h's namespace with its own
// data directory, from a binary built for the test. The process is
// killed when the test ends; its log is printed if the test failed.
func startNode(t testing.TB, h *host, args ...string) *node {
	t.Helper()
	return startNodeWith(t, h, peerdBinary(t), "", args...)
}

// startNodeWith is startNode with the executable and the API token given.
func startNodeWith(t testing.TB, h *host, bin, token string, args ...string) *node {
	t.Helper()
	n := &node{host: h, t: t, bin: bin, dataDir: t.TempDir(), token: token}
	n.logPath = filepath.Join(n.dataDir, "peerd.log")
	n.http = &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DialContext: dialIn(h.ns), DisableKeepAlives: true},
	}
	// The e2e tests drive raw mechanics (gossip, faults, the dataplane)
	// without tokens: ACLs off unless a test passes -acl-enabled=true
	// (the last of a flag wins).
	n.args = append([]string{"agent", "-node", h.name, "-data-dir", n.dataDir, "-bind-addr", h.ip, "-acl-enabled=false"}, args...)
	if !slices.Contains(args, "-encrypt") && !slices.Contains(args, "-insecure-gossip") {
		// A real deployment encrypts gossip; an agent refuses to start
		// without a key otherwise.
		n.args = append(n.args, "-encrypt", e2eGossipKey)
	}
	if err := n.start(); err != nil {
		t.Fatalf("start peerd on %s: %v", h.name, err)
	}
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			logs, _ := os.ReadFile(n.logPath)
			t.Logf("--- log of %s (peerd %s)\n%s", h.name, strings.Join(n.args, " "), logs)
		}
	})
	return n
}

// start runs the process (again, after kill or a clean exit) on the same
// data directory and arguments. Its output is appended to logPath: a
// file, not a pipe, so that a process started by a reload inherits it
// and nothing waits for it to close.
func (n *node) start() error {
	logs, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logs.Close()
	fmt.Fprintf(logs, "=== %s: peerd %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(n.args, " "))
	cmd := exec.Command(n.bin, n.args...)
	cmd.Stdout, cmd.Stderr = logs, logs
	// The namespace's thread outlives the process (it ends at cleanup), so
	// the death signal fires only if the test binary dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	n.ns.Run(func() { err = cmd.Start() })
	if err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	n.mu.Lock()
	n.pid, n.done = cmd.Process.Pid, done
	n.mu.Unlock()
	return nil
}

func (n *node) current() (int, chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pid, n.done
}

// signal sends sig to the node's current process.
func (n *node) signal(sig syscall.Signal) error {
	pid, _ := n.current()
	return syscall.Kill(pid, sig)
}

// kill sends SIGKILL and waits for the process to be gone.
func (n *node) kill() {
	pid, done := n.current()
	_ = syscall.Kill(pid, syscall.SIGCONT) // a stopped process dies too
	_ = syscall.Kill(pid, syscall.SIGKILL)
	<-done
}

// stop sends SIGTERM (what systemctl stop does) and waits up to timeout
// for the process to exit, then kills it.
func (n *node) stop(timeout time.Duration) error {
	pid, done := n.current()
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		n.kill()
		return fmt.Errorf("%s did not exit within %v of SIGTERM", n.name, timeout)
	}
}

// reload sends SIGHUP (systemctl reload) and adopts the new process the
// old one starts: it becomes the node's process once the old one has
// exited. It needs the test process to be a child subreaper (adopt
// reparents the orphan here), which newSubreaper makes it.
func (n *node) reload(ctx context.Context) error {
	oldPid, oldDone := n.current()
	if err := syscall.Kill(oldPid, syscall.SIGHUP); err != nil {
		return err
	}
	var child int
	for child == 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: no new process after SIGHUP: %w", n.name, ctx.Err())
		case <-oldDone:
			return fmt.Errorf("%s: the old process exited before its successor was seen", n.name)
		case <-time.After(10 * time.Millisecond):
		}
		child = childOf(oldPid)
	}
	select {
	case <-oldDone:
	case <-ctx.Done():
		return fmt.Errorf("%s: the old process (pid %d) has not exited after handing over to %d: %w", n.name, oldPid, child, ctx.Err())
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ws unix.WaitStatus
		for {
			if _, err := unix.Wait4(child, &ws, 0, nil); err != unix.EINTR {
				return
			}
		}
	}()
	n.mu.Lock()
	n.pid, n.done = child, done
	n.mu.Unlock()
	select {
	case <-done:
		return fmt.Errorf("%s: the new process (pid %d) exited", n.name, child)
	default:
		return nil
	}
}

// childOf finds a process whose parent is pid (0 if none).
func childOf(pid int) int {
	entries, _ := os.ReadDir("/proc")
	want := strconv.Itoa(pid)
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == want {
			c, _ := strconv.Atoi(e.Name())
			return c
		}
	}
	return 0
}

// becomeSubreaper makes the test process adopt orphaned descendants: the
// process a reloading peerd starts outlives its parent, and is then waited
// for here (node.reload) instead of by init.
func becomeSubreaper(t testing.TB) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("prctl(PR_SET_CHILD_SUBREAPER): %v", err)
	}
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
	if n.token != "" {
		req.Header.Set("X-Consul-Token", n.token)
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
