package dataplane

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/peerd/peerd/internal/testutil"
)

// The inbound tests attach the sk_lookup program only to a private network
// namespace created per test (never the host's) and only connect over its
// loopback, where local routes make the gateway's test VIPs (documentation
// prefixes) deliverable.

const (
	inboundListenPort  = 15080
	inboundFirst       = 18000
	inboundLast        = 18010
	inboundPortInRange = 18005
)

var (
	inboundPrefixes = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/64")}
	// Local too, but not gateway VIPs.
	otherPrefixes = []string{"198.51.100.0/24", "2001:db8:1::/64"}
)

// inboundNetns is a private netns whose lo delivers the inbound and other
// prefixes locally.
func inboundNetns(t *testing.T) *testutil.Netns {
	t.Helper()
	ns := testutil.NewNetns(t)
	var err error
	ns.Run(func() {
		lo, lerr := netlink.LinkByName("lo")
		if lerr != nil {
			err = lerr
			return
		}
		cidrs := append([]string{inboundPrefixes[0].String(), inboundPrefixes[1].String()}, otherPrefixes...)
		for _, c := range cidrs {
			r := &netlink.Route{LinkIndex: lo.Attrs().Index, Dst: mustNet(c), Type: unix.RTN_LOCAL, Table: unix.RT_TABLE_LOCAL, Scope: netlink.SCOPE_HOST}
			if err = netlink.RouteAdd(r); err != nil {
				err = fmt.Errorf("local route %s: %w", c, err)
				return
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func inboundConfig(ns *testutil.Netns, pinDir string) Config {
	return Config{
		PinDir:          pinDir,
		InboundPrefixes: inboundPrefixes,
		InboundPorts:    [2]uint16{inboundFirst, inboundLast},
		InboundNetns:    ns.Path(),
	}
}

// echoServer is the gateway's listener: it reports each accepted
// connection's local address (the original destination) and echoes lines.
type echoServer struct {
	ln     net.Listener
	locals chan netip.AddrPort
}

func echoIn(t *testing.T, ns *testutil.Netns, addr string) *echoServer {
	t.Helper()
	s := &echoServer{locals: make(chan netip.AddrPort, 8)}
	var err error
	ns.Run(func() { s.ln, err = ListenInbound(context.Background(), net.ListenConfig{}, "tcp", addr) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.ln.Close() })
	go func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			a := c.LocalAddr().(*net.TCPAddr).AddrPort()
			s.locals <- netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := fmt.Fprint(c, "echo:"+line); err != nil {
						return
					}
				}
			}()
		}
	}()
	return s
}

func (s *echoServer) next(t *testing.T) netip.AddrPort {
	t.Helper()
	select {
	case a := <-s.locals:
		return a
	case <-time.After(10 * time.Second):
		t.Fatalf("%s accepted nothing", s.ln.Addr())
	}
	return netip.AddrPort{}
}

func (s *echoServer) none(t *testing.T) {
	t.Helper()
	select {
	case a := <-s.locals:
		t.Fatalf("%s accepted an unexpected connection to %s", s.ln.Addr(), a)
	default:
	}
}

func dialIn(t *testing.T, ns *testutil.Netns, addr string) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	var err error
	ns.Run(func() { c, err = net.DialTimeout("tcp", addr, 3*time.Second) })
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, err
}

func echo(t *testing.T, c net.Conn, word string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintln(c, word); err != nil {
		t.Fatalf("write: %v", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "echo:"+word+"\n" {
		t.Fatalf("echo %q: got %q, %v", word, line, err)
	}
}

// mustAccept dials addr in ns and checks that srv accepted it with addr as
// the local address.
func mustAccept(t *testing.T, ns *testutil.Netns, srv *echoServer, addr string) net.Conn {
	t.Helper()
	c, err := dialIn(t, ns, addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	if got := srv.next(t); got != netip.MustParseAddrPort(addr) {
		t.Fatalf("dial %s: accepted with local address %s", addr, got)
	}
	echo(t, c, "hello")
	return c
}

func mustRefuse(t *testing.T, ns *testutil.Netns, addr string) {
	t.Helper()
	c, err := dialIn(t, ns, addr)
	if err == nil {
		t.Fatalf("dial %s: connected to %s, want refused", addr, c.RemoteAddr())
	}
	if !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("dial %s: %v, want connection refused", addr, err)
	}
}

func wantCounters(t *testing.T, dp *Dataplane, want map[string]uint64) {
	t.Helper()
	st := dp.Status().Inbound
	if st.Err != nil {
		t.Errorf("inbound error: %v", st.Err)
	}
	for k, v := range want {
		if st.Counters[k] != v {
			t.Errorf("counter %s = %d, want %d (all: %v)", k, st.Counters[k], v, st.Counters)
		}
	}
}

// TestInboundCapture: connections to the gateway VIPs on a port of the
// range reach the registered listeners (bound to 127.0.0.1 and ::1) with
// the VIP as their local address; other addresses and ports take the
// normal lookup (nothing listens there: refused).
func TestInboundCapture(t *testing.T) {
	testutil.RequireBPF(t)
	ns, pinDir := inboundNetns(t), newPinDir(t)
	dp, err := load(inboundConfig(ns, pinDir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dp.Close(context.Background()) })
	st := dp.Status().Inbound
	testutil.SkipIfNotSupported(t, st.Err) // sk_lookup: Linux 5.9
	if !st.Enabled || !st.Loaded || st.Reused || st.AttachMode != "netns-link" || st.Err != nil {
		t.Fatalf("inbound status %+v", st)
	}
	if st.Maps["inbound_vips"] != 2 || st.Maps["inbound_socks"] != 0 {
		t.Errorf("maps %v", st.Maps)
	}
	got, err := dp.InboundPrefixes()
	if err != nil || len(got) != 2 {
		t.Errorf("InboundPrefixes: %v, %v", got, err)
	}
	for _, p := range got {
		if p != inboundPrefixes[0] && p != inboundPrefixes[1] {
			t.Errorf("unexpected prefix %s", p)
		}
	}

	v4 := echoIn(t, ns, fmt.Sprintf("127.0.0.1:%d", inboundListenPort))
	v6 := echoIn(t, ns, fmt.Sprintf("[::1]:%d", inboundListenPort))
	vip4 := fmt.Sprintf("203.0.113.10:%d", inboundPortInRange)
	vip6 := fmt.Sprintf("[2001:db8::10]:%d", inboundLast)

	// No listener registered yet: matched, no socket, normal lookup.
	mustRefuse(t, ns, vip4)
	wantCounters(t, dp, map[string]uint64{"matched": 1, "no_socket": 1, "assigned": 0})

	if err := dp.SetInboundListener(v4.ln); err != nil {
		t.Fatal(err)
	}
	if err := dp.SetInboundListener(v6.ln); err != nil {
		t.Fatal(err)
	}
	if n := dp.Status().Inbound.Maps["inbound_socks"]; n != 2 {
		t.Errorf("inbound_socks = %d, want 2", n)
	}
	// Go's default listener is MPTCP where the kernel has it: refused
	// with a clear error, the registration is unchanged.
	var mp net.Listener
	ns.Run(func() { mp, err = net.Listen("tcp", "127.0.0.1:0") })
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Close()
	if err := dp.SetInboundListener(mp); err != nil && !errors.Is(err, ErrMPTCPListener) {
		t.Errorf("SetInboundListener(default net.Listen listener): %v", err)
	} else if err == nil {
		t.Log("kernel without MPTCP: the default listener is plain TCP")
		if err := dp.SetInboundListener(v4.ln); err != nil {
			t.Fatal(err)
		}
	}
	mustAccept(t, ns, v4, vip4)
	mustAccept(t, ns, v4, fmt.Sprintf("203.0.113.200:%d", inboundFirst))
	mustAccept(t, ns, v6, vip6)

	for _, addr := range []string{
		fmt.Sprintf("203.0.113.10:%d", inboundFirst-1),
		fmt.Sprintf("203.0.113.10:%d", inboundLast+1),
		fmt.Sprintf("198.51.100.10:%d", inboundPortInRange),
		fmt.Sprintf("[2001:db8::10]:%d", inboundLast+1),
		fmt.Sprintf("[2001:db8:1::10]:%d", inboundPortInRange),
		fmt.Sprintf("127.0.0.1:%d", inboundPortInRange),
	} {
		mustRefuse(t, ns, addr)
	}
	v4.none(t)
	v6.none(t)
	// The listeners themselves still work directly.
	mustAccept(t, ns, v4, v4.ln.Addr().String())
	wantCounters(t, dp, map[string]uint64{"matched": 4, "no_socket": 1, "assigned": 3, "assign_errors": 0})

	// A closed listener leaves the map: back to the normal lookup.
	_ = v6.ln.Close()
	mustRefuse(t, ns, vip6)
	wantCounters(t, dp, map[string]uint64{"matched": 5, "no_socket": 2, "assigned": 3})
	if err := dp.ClearInboundListeners(); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, ns, vip4)
	wantCounters(t, dp, map[string]uint64{"matched": 6, "no_socket": 3, "assigned": 3})

	// Prefixes can change at run time.
	if err := dp.SetInboundListener(v4.ln); err != nil {
		t.Fatal(err)
	}
	if err := dp.SetInboundPrefixes([]netip.Prefix{netip.MustParsePrefix("198.51.100.10/32")}); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, ns, vip4)
	mustAccept(t, ns, v4, fmt.Sprintf("198.51.100.10:%d", inboundPortInRange))
	mustRefuse(t, ns, fmt.Sprintf("198.51.100.11:%d", inboundPortInRange))
}

// TestInboundDualStackListener: a listener on [::] (dual-stack) takes
// both families.
func TestInboundDualStackListener(t *testing.T) {
	testutil.RequireBPF(t)
	ns, pinDir := inboundNetns(t), newPinDir(t)
	dp, err := load(inboundConfig(ns, pinDir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dp.Close(context.Background()) })
	srv := echoIn(t, ns, fmt.Sprintf(":%d", inboundListenPort))
	if err := dp.SetInboundListener(srv.ln); err != nil {
		t.Fatal(err)
	}
	mustAccept(t, ns, srv, fmt.Sprintf("203.0.113.10:%d", inboundPortInRange))
	mustAccept(t, ns, srv, fmt.Sprintf("[2001:db8::10]:%d", inboundPortInRange))
	wantCounters(t, dp, map[string]uint64{"matched": 2, "assigned": 2, "no_socket": 0})
}

// TestInboundRestart: Close and Load again on the same pins keeps the
// netns link (updated in place, same id), the prefixes, the registered
// listener and the counters; an open connection survives; a changed port
// range takes effect; Cleanup detaches.
func TestInboundRestart(t *testing.T) {
	testutil.RequireBPF(t)
	ns, pinDir := inboundNetns(t), newPinDir(t)
	cfg := inboundConfig(ns, pinDir)
	dp1, err := load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := echoIn(t, ns, fmt.Sprintf("127.0.0.1:%d", inboundListenPort))
	if err := dp1.SetInboundListener(srv.ln); err != nil {
		t.Fatal(err)
	}
	vip4 := fmt.Sprintf("203.0.113.10:%d", inboundPortInRange)
	open := mustAccept(t, ns, srv, vip4)
	before := pinnedLinkIDs(t, pinDir)
	if len(before) != 1 {
		t.Fatalf("pinned links %v, want 1", before)
	}
	if err := dp1.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Closed: the pinned link keeps the program attached.
	mustAccept(t, ns, srv, vip4)

	dp2, err := load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dp2.Close(context.Background()) })
	st := dp2.Status().Inbound
	if !st.Loaded || !st.Reused || st.Maps["inbound_socks"] != 1 || st.Maps["inbound_vips"] != 2 {
		t.Fatalf("inbound status after restart %+v", st)
	}
	after := pinnedLinkIDs(t, pinDir)
	for p, id := range before {
		if after[p] != id {
			t.Errorf("link %s: id %d before, %d after: re-attached instead of updated", p, id, after[p])
		}
	}
	echo(t, open, "after-restart")
	mustAccept(t, ns, srv, vip4)
	wantCounters(t, dp2, map[string]uint64{"matched": 3, "assigned": 3})
	if err := dp2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	// A new port range: the link is updated to the new program.
	cfg.InboundPorts = [2]uint16{inboundLast + 10, inboundLast + 10}
	dp3, err := load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dp3.Close(context.Background()) })
	if st := dp3.Status().Inbound; !st.Loaded || !st.Reused {
		t.Fatalf("inbound status with new ports %+v", st)
	}
	mustRefuse(t, ns, vip4)
	mustAccept(t, ns, srv, fmt.Sprintf("203.0.113.10:%d", inboundLast+10))
	wantCounters(t, dp3, map[string]uint64{"matched": 4, "assigned": 4})

	if err := dp3.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pinDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin dir still there after Cleanup: %v", err)
	}
	mustRefuse(t, ns, fmt.Sprintf("203.0.113.10:%d", inboundLast+10))
	srv.none(t)
}

// TestInboundCleanupDetachesAtOnce: when Cleanup returns, the sk_lookup
// program no longer runs. Dropping the pin and the handle alone leaves
// the release to the kernel's deferred free of the bpffs inode: on 5.10
// about half the Cleanups still captured the next connection (up to
// ~40 ms later), so a few rounds catch a Cleanup that does not detach.
func TestInboundCleanupDetachesAtOnce(t *testing.T) {
	testutil.RequireBPF(t)
	ns := inboundNetns(t)
	srv := echoIn(t, ns, fmt.Sprintf("127.0.0.1:%d", inboundListenPort))
	vip4 := fmt.Sprintf("203.0.113.10:%d", inboundPortInRange)
	for i := 0; i < 10; i++ {
		dp, err := load(inboundConfig(ns, newPinDir(t)))
		if err != nil {
			t.Fatal(err)
		}
		if err := dp.SetInboundListener(srv.ln); err != nil {
			t.Fatal(err)
		}
		mustAccept(t, ns, srv, vip4)
		if err := dp.Cleanup(context.Background()); err != nil {
			t.Fatal(err)
		}
		mustRefuse(t, ns, vip4)
		srv.none(t)
	}
}

// TestInboundMissingFeature: when probing sk_lookup fails the layer is off
// with the probe's error (inconclusive, so not ErrNotSupported), nothing is
// attached or pinned, and its methods say so.
func TestInboundMissingFeature(t *testing.T) {
	testutil.RequireBPF(t)
	ns, pinDir := inboundNetns(t), newPinDir(t)
	cfg := inboundConfig(ns, pinDir)
	cfg.probeOverride = func(layer, feature string) error {
		if layer == LayerInbound && strings.Contains(feature, "SkLookup") {
			return fmt.Errorf("pretend: %w", unix.EOPNOTSUPP)
		}
		return nil
	}
	dp, err := load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close(context.Background())
	st := dp.Status().Inbound
	if !st.Enabled || st.Loaded || !errors.Is(st.Err, unix.EOPNOTSUPP) || errors.Is(st.Err, ErrNotSupported) {
		t.Fatalf("inbound status %+v", st)
	}
	if _, err := os.Stat(filepath.Join(pinDir, LayerInbound)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("inbound pins exist although the layer is off: %v", err)
	}
	srv := echoIn(t, ns, fmt.Sprintf("127.0.0.1:%d", inboundListenPort))
	if err := dp.SetInboundListener(srv.ln); !errors.Is(err, ErrLayerOff) {
		t.Errorf("SetInboundListener with the layer off: %v", err)
	}
	mustRefuse(t, ns, fmt.Sprintf("203.0.113.10:%d", inboundPortInRange))
}

func TestInboundPrefixKey(t *testing.T) {
	for _, tt := range []struct {
		in   string
		bits uint32
		out  string
	}{
		{"203.0.113.7/24", 120, "203.0.113.0/24"},
		{"10.0.0.1/32", 128, "10.0.0.1/32"},
		{"2001:db8::1/64", 64, "2001:db8::/64"},
		{"::/0", 0, "::/0"},
	} {
		k, err := prefixKey(netip.MustParsePrefix(tt.in))
		if err != nil {
			t.Fatal(err)
		}
		if k.Prefixlen != tt.bits {
			t.Errorf("%s: prefixlen %d, want %d", tt.in, k.Prefixlen, tt.bits)
		}
		if got := keyPrefix(k).String(); got != tt.out {
			t.Errorf("%s: back as %s, want %s", tt.in, got, tt.out)
		}
	}
	if _, err := prefixKey(netip.Prefix{}); err == nil {
		t.Error("invalid prefix accepted")
	}
}
