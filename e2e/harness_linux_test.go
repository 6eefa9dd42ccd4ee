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
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
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
		err = netlink.LinkSetUp(veth)
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

// node is a real peerd process on a host.
type node struct {
	*host
	args []string
	cmd  *exec.Cmd
	done chan struct{}
	http *http.Client
}

// e2eGossipKey is the gossip key startNode gives every node unless the
// test passes -encrypt or -insecure-gossip itself.
const e2eGossipKey = "ZTJlLWdvc3NpcC1rZXktZm9yLXBlZXJkLWUyZS10c3Q="

// startNode runs `peerd agent args...` inside h's namespace with its own
// data directory. The process is killed when the test ends; its log is
// printed if the test failed.
func startNode(t testing.TB, h *host, args ...string) *node {
	t.Helper()
	n := &node{host: h, done: make(chan struct{})}
	n.http = &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DialContext: dialIn(h.ns), DisableKeepAlives: true},
	}
	dataDir := t.TempDir()
	// The e2e tests drive raw mechanics (gossip, faults, the dataplane)
	// without tokens: ACLs off unless a test passes -acl-enabled=true
	// (the last of a flag wins).
	n.args = append([]string{"agent", "-node", h.name, "-data-dir", dataDir, "-bind-addr", h.ip, "-acl-enabled=false"}, args...)
	if !slices.Contains(args, "-encrypt") && !slices.Contains(args, "-insecure-gossip") {
		// A real deployment encrypts gossip; an agent refuses to start
		// without a key otherwise.
		n.args = append(n.args, "-encrypt", e2eGossipKey)
	}
	logs := &testutil.SyncBuffer{}
	cmd := exec.Command(peerdBinary(t), n.args...)
	cmd.Stdout, cmd.Stderr = logs, logs
	// The namespace's thread outlives the process (it ends at cleanup), so
	// the death signal fires only if the test binary dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var err error
	h.ns.Run(func() { err = cmd.Start() })
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
