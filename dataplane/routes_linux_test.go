package dataplane

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/peerd/peerd/internal/testutil"
)

// nodeNetns is a private namespace that looks like a node: an interface
// (one end of a veth pair whose other end is in the same namespace) with
// addresses and default routes through it to a gateway that does not
// exist, so traffic to a virtual IP without an unreachable route would be
// sent (and lost) there.
func nodeNetns(t *testing.T) *testutil.Netns {
	t.Helper()
	ns := testutil.NewNetns(t)
	var err error
	ns.Run(func() {
		d := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "node0"}, PeerName: "node0p"}
		if err = netlink.LinkAdd(d); err != nil {
			return
		}
		for _, name := range []string{"node0", "node0p"} {
			var l netlink.Link
			if l, err = netlink.LinkByName(name); err != nil {
				return
			}
			if err = netlink.LinkSetUp(l); err != nil {
				return
			}
		}
		for _, a := range []string{"10.99.0.1/24", "fd99::1/64"} {
			addr, _ := netlink.ParseAddr(a)
			addr.Flags = unix.IFA_F_NODAD
			if err = netlink.AddrAdd(d, addr); err != nil {
				return
			}
		}
		for _, gw := range []string{"10.99.0.254", "fd99::fe"} {
			if err = netlink.RouteAdd(&netlink.Route{LinkIndex: d.Attrs().Index, Gw: net.ParseIP(gw)}); err != nil {
				return
			}
		}
	})
	if err != nil {
		t.Fatalf("node netns: %v", err)
	}
	return ns
}

// TestUnreachableRoutes: with capture on, the virtual IP ranges get
// unreachable routes in the dataplane's namespace: a process outside the
// captured cgroup fails at once with ENETUNREACH (instead of its SYN going
// out of the default route), a captured one still reaches the listener.
func TestUnreachableRoutes(t *testing.T) {
	testutil.RequireBPF(t)
	ns := nodeNetns(t)
	cg := testutil.NewCgroup(t)
	cgID, err := CgroupID(cg)
	if err != nil {
		t.Fatal(err)
	}
	pinDir := newPinDir(t)
	ranges := []netip.Prefix{netip.MustParsePrefix("240.0.0.0/4"), netip.MustParsePrefix("fd00:f00d::/64")}
	cfg := Config{
		CgroupPath: cg, PinDir: pinDir, Capture: true,
		ListenerV4: netip.MustParseAddr("127.0.0.1"), ListenerV6: netip.IPv6Loopback(), ListenerPort: testListenerPort,
		UnreachablePrefixes: ranges,
	}
	start := func(cfg Config) (dp *Dataplane, err error) {
		ns.Run(func() { dp, err = load(cfg) })
		return dp, err
	}
	routesIn := func() []string {
		var out []string
		ns.Run(func() {
			rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: routeProtocol}, netlink.RT_FILTER_PROTOCOL)
			if err != nil {
				t.Error(err)
			}
			for _, r := range rs {
				if r.Type == unix.RTN_UNREACHABLE {
					out = append(out, "unreachable "+r.Dst.String())
				}
			}
		})
		slices.Sort(out)
		return out
	}
	want := []string{"unreachable 240.0.0.0/4", "unreachable fd00:f00d::/64"}

	dp, err := start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dp.Close(context.Background()) })
	st := dp.Status().Capture
	if !st.Loaded || !slices.Equal(st.Routes, want) {
		t.Fatalf("capture status %+v: want loaded with routes %v", st, want)
	}
	if got := routesIn(); !slices.Equal(got, want) {
		t.Fatalf("routes in the namespace %v, want %v", got, want)
	}
	if err := dp.SetVIP(netip.MustParseAddr("240.0.0.1"), 8080, 1, 1); err != nil {
		t.Fatal(err)
	}
	if err := dp.SetVIP(netip.MustParseAddr("fd00:f00d::1"), 80, 1, 2); err != nil {
		t.Fatal(err)
	}
	get := func() *Dataplane { return dp }
	a4 := listenIn(t, ns, fmt.Sprintf("127.0.0.1:%d", testListenerPort), get)
	a6 := listenIn(t, ns, fmt.Sprintf("[::1]:%d", testListenerPort), get)

	for _, c := range []struct {
		vip string
		a   *acceptor
	}{{"240.0.0.1:8080", a4}, {"[fd00:f00d::1]:80", a6}} {
		begin := time.Now()
		line := startHelper(t, ns, "", "dial", c.vip, "0").recv(t)
		took := time.Since(begin)
		// An unreachable route answers EHOSTUNREACH. Without it the SYN
		// waits for the gateway's neighbour entry, which fails after
		// ~3 s (the helper's dial timeout): hence the time limit.
		if !strings.Contains(line, "no route to host") && !strings.Contains(line, "network is unreachable") {
			t.Errorf("%s outside the cgroup: %q, want EHOSTUNREACH or ENETUNREACH", c.vip, line)
		}
		t.Logf("%s outside the cgroup: %s after %v", c.vip, line, took)
		if took > time.Second {
			t.Errorf("%s outside the cgroup took %v to fail, want at once", c.vip, took)
		}
		h := startHelper(t, ns, cg, "dial", c.vip, "0")
		if line := h.recv(t); !strings.HasPrefix(line, "OK ") {
			t.Fatalf("%s in the cgroup: %s", c.vip, line)
		}
		if r := c.a.next(t); !r.ok || r.dest != netip.MustParseAddrPort(c.vip) || r.cgID != cgID {
			t.Fatalf("origin %+v", r)
		}
	}

	// A pod (a namespace behind a veth, default route to the node) is
	// answered with ICMP unreachable by the node's route.
	pod := podNetns(t, ns)
	for _, vip := range []string{"240.0.0.1:8080", "[fd00:f00d::1]:80"} {
		begin := time.Now()
		line := startHelper(t, pod, "", "dial", vip, "0").recv(t)
		took := time.Since(begin)
		t.Logf("%s from a pod behind the node: %s after %v", vip, line, took)
		if !strings.Contains(line, "no route to host") && !strings.Contains(line, "network is unreachable") {
			t.Errorf("%s from the pod: %q, want EHOSTUNREACH or ENETUNREACH", vip, line)
		}
		// IPv6 from the pod fails after one SYN retransmission (~1 s;
		// the first SYN draws no ICMPv6 error, cause not found), still
		// well before the ~3 s of a failed neighbour resolution that the
		// node's default route would give without the route.
		limit := time.Second
		if strings.HasPrefix(vip, "[") {
			limit = 2 * time.Second
		}
		if took > limit {
			t.Errorf("%s from the pod took %v to fail, want under %v", vip, took, limit)
		}
	}

	// A restart with the same ranges: routes replaced, not refused.
	if err := dp.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := routesIn(); !slices.Equal(got, want) {
		t.Fatalf("routes after Close %v, want them kept %v", got, want)
	}
	dp2, err := start(cfg)
	if err != nil {
		t.Fatalf("restart with the same ranges: %v", err)
	}
	if st := dp2.Status().Capture; !st.Loaded || !st.Reused || !slices.Equal(st.Routes, want) {
		t.Fatalf("restarted capture status %+v", st)
	}

	// A range over the node's own network is refused, nothing loaded.
	bad := cfg
	bad.PinDir = newPinDir(t)
	bad.UnreachablePrefixes = []netip.Prefix{netip.MustParsePrefix("10.99.0.0/16")}
	if _, err := start(bad); err == nil || !strings.Contains(err.Error(), "interface node0") || !strings.Contains(err.Error(), "-virtual-ip-cidr") {
		t.Fatalf("overlapping range: %v, want an error naming node0 and -virtual-ip-cidr", err)
	}

	var cerr error
	ns.Run(func() { cerr = dp2.Cleanup(context.Background()) })
	if cerr != nil {
		t.Fatal(cerr)
	}
	if got := routesIn(); len(got) != 0 {
		t.Fatalf("routes after Cleanup: %v", got)
	}

	// The package Cleanup (`peerd dataplane cleanup`) has no
	// configuration: it removes peerd's routes by their protocol.
	dp3, err := start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_ = dp3.Close(context.Background())
	if got := routesIn(); !slices.Equal(got, want) {
		t.Fatalf("routes %v, want %v", got, want)
	}
	ns.Run(func() { cerr = Cleanup(pinDir) })
	if cerr != nil {
		t.Fatal(cerr)
	}
	if got := routesIn(); len(got) != 0 {
		t.Fatalf("routes after the package Cleanup: %v", got)
	}
}

// podNetns is a namespace connected to node by a veth pair (10.98.0.2/24
// and fd98::2/64, node side .1 and ::1), its default routes via the node,
// which forwards.
func podNetns(t *testing.T, node *testutil.Netns) *testutil.Netns {
	t.Helper()
	pod := testutil.NewNetns(t)
	podFd, err := unix.Open(pod.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(podFd)
	addAddrs := func(l netlink.Link, addrs ...string) error {
		// No DAD: a tentative link-local address holds back neighbour
		// discovery, and so the pod's first SYN, for about a second.
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+l.Attrs().Name+"/accept_dad", []byte("0"), 0); err != nil {
			return err
		}
		for _, a := range addrs {
			addr, err := netlink.ParseAddr(a)
			if err != nil {
				return err
			}
			addr.Flags = unix.IFA_F_NODAD
			if err := netlink.AddrAdd(l, addr); err != nil {
				return fmt.Errorf("address %s: %w", a, err)
			}
		}
		return netlink.LinkSetUp(l)
	}
	node.Run(func() {
		if err = netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "pod0"}, PeerName: "pod0c"}); err != nil {
			return
		}
		var c, l netlink.Link
		if c, err = netlink.LinkByName("pod0c"); err != nil {
			return
		}
		if err = netlink.LinkSetNsFd(c, podFd); err != nil {
			return
		}
		if l, err = netlink.LinkByName("pod0"); err != nil {
			return
		}
		if err = addAddrs(l, "10.98.0.1/24", "fd98::1/64"); err != nil {
			return
		}
		for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
			if err = os.WriteFile(f, []byte("1"), 0); err != nil {
				return
			}
		}
	})
	if err != nil {
		t.Fatalf("node side of the pod's veth: %v", err)
	}
	pod.Run(func() {
		var l netlink.Link
		if l, err = netlink.LinkByName("pod0c"); err != nil {
			return
		}
		if err = addAddrs(l, "10.98.0.2/24", "fd98::2/64"); err != nil {
			return
		}
		for _, gw := range []string{"10.98.0.1", "fd98::1"} {
			if err = netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(gw)}); err != nil {
				return
			}
		}
	})
	if err != nil {
		t.Fatalf("pod side of the veth: %v", err)
	}
	return pod
}
