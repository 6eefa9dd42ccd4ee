//go:build linux

package dataplane

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/peerd/peerd/internal/testutil"
)

// syncEnv is a Dataplane with the capture layer on a child cgroup and the
// TC layer on the loopback of a private network namespace, so datagrams
// sent there to 127.0.0.x are counted for the peer that address maps to.
type syncEnv struct {
	t   *testing.T
	ns  *testutil.Netns
	cfg Config
}

func newSyncEnv(t *testing.T) *syncEnv {
	testutil.RequireBPF(t)
	e := &syncEnv{t: t, ns: testutil.NewNetns(t)}
	e.cfg = Config{
		CgroupPath:   testutil.NewCgroup(t),
		PinDir:       newPinDir(t),
		Capture:      true,
		ListenerV4:   netip.MustParseAddr("127.0.0.1"),
		ListenerPort: testListenerPort,
		Mark:         testMark,
		Interfaces:   []string{"lo"},
	}
	return e
}

// load is a daemon start: Load with the same PinDir as every other start.
func (e *syncEnv) load() *Dataplane {
	e.t.Helper()
	var dp *Dataplane
	var err error
	e.ns.Run(func() { dp, err = load(e.cfg) })
	if err != nil {
		e.t.Fatalf("Load: %v", err)
	}
	e.t.Cleanup(func() { _ = dp.Close(context.Background()) })
	if st := dp.Status(); !st.Capture.Loaded || !st.TC.Loaded {
		e.t.Fatalf("layers not loaded: capture %+v, tc %+v", st.Capture, st.TC)
	}
	return dp
}

// send sends n datagrams from 127.0.0.1 to ip:9000, where a socket
// receives them (so nothing answers with ICMP), and waits for all of them:
// each counts once, as tx on lo's egress, for the peer of ip.
func (e *syncEnv) send(ip string, n int) {
	e.t.Helper()
	var err error
	e.ns.Run(func() {
		var rx, tx *net.UDPConn
		if rx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip), Port: 9000}); err != nil {
			return
		}
		defer rx.Close()
		if tx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			return
		}
		defer tx.Close()
		buf := make([]byte, 64)
		for range n {
			if _, err = tx.WriteToUDP(buf[:32], rx.LocalAddr().(*net.UDPAddr)); err != nil {
				return
			}
			_ = rx.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, _, err = rx.ReadFromUDP(buf); err != nil {
				return
			}
		}
	})
	if err != nil {
		e.t.Fatalf("send to %s: %v", ip, err)
	}
}

func mustSync(t *testing.T, dp *Dataplane, want Desired) {
	t.Helper()
	if err := dp.Sync(want); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

func txPackets(t *testing.T, dp *Dataplane) map[string]uint64 {
	t.Helper()
	c, err := dp.PeerCountersByName()
	if err != nil {
		t.Fatalf("PeerCountersByName: %v", err)
	}
	out := map[string]uint64{}
	for name, pc := range c {
		out[name] = pc.TxPackets
	}
	return out
}

func peerIDs(t *testing.T, dp *Dataplane) map[string]uint32 {
	t.Helper()
	ids, err := dp.PeerIDs()
	if err != nil {
		t.Fatalf("PeerIDs: %v", err)
	}
	return ids
}

func vipSet(t *testing.T, dp *Dataplane) map[netip.AddrPort]VIP {
	t.Helper()
	vips, err := dp.VIPs()
	if err != nil {
		t.Fatalf("VIPs: %v", err)
	}
	out := map[netip.AddrPort]VIP{}
	for _, v := range vips {
		out[v.Addr] = v
	}
	return out
}

func peerAddrSet(t *testing.T, dp *Dataplane) map[netip.Addr]uint32 {
	t.Helper()
	addrs, err := dp.PeerAddrs()
	if err != nil {
		t.Fatalf("PeerAddrs: %v", err)
	}
	out := map[netip.Addr]uint32{}
	for _, a := range addrs {
		out[a.Addr] = a.PeerID
	}
	return out
}

var (
	vip1 = netip.MustParseAddr("240.0.0.1")
	vip2 = netip.MustParseAddr("240.0.0.2")
	vip3 = netip.MustParseAddr("240.0.0.3")
	vip6 = netip.MustParseAddr("fd00::1")
)

// TestSyncRestart is a daemon restart with the catalog changed while the
// daemon was down: peer beta's peering was deleted and a peer aardvark
// (sorting before everyone) established. After the restart's first Sync,
// beta's VIP, address, id and counters are gone, and so is an entry
// written behind Sync's back; alpha and gamma kept their ids, alpha its
// counters (and counts on from them); aardvark got an id nobody had.
func TestSyncRestart(t *testing.T) {
	e := newSyncEnv(t)

	dp1 := e.load()
	mustSync(t, dp1, Desired{
		VIPs: map[netip.Addr]VIPTarget{
			vip1: {Peer: "alpha", Service: "web"},
			vip6: {Peer: "alpha", Service: "web"},
			vip2: {Peer: "beta", Service: "db"},
		},
		PeerAddrs: map[netip.Addr]string{
			netip.MustParseAddr("127.0.0.2"): "alpha",
			netip.MustParseAddr("127.0.0.3"): "beta",
		},
		Peers: []string{"gamma", "beta", "alpha"},
	})
	ids1 := peerIDs(t, dp1)
	if want := map[string]uint32{"alpha": 1, "beta": 2, "gamma": 3}; !maps.Equal(ids1, want) {
		t.Fatalf("ids on an empty registry: got %v, want %v (name order)", ids1, want)
	}
	e.send("127.0.0.2", 5)
	e.send("127.0.0.3", 3)
	if got, want := txPackets(t, dp1), map[string]uint64{"alpha": 5, "beta": 3}; !maps.Equal(got, want) {
		t.Fatalf("tx packets before the restart: got %v, want %v", got, want)
	}
	// Not from the catalog (an older peerd, an operator): Sync owns the map.
	if err := dp1.SetVIP(netip.MustParseAddr("240.0.0.99"), 80, 1, 1); err != nil {
		t.Fatal(err)
	}
	if err := dp1.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	dp2 := e.load()
	second := Desired{
		VIPs: map[netip.Addr]VIPTarget{
			vip1: {Peer: "alpha", Service: "web"},
			vip3: {Peer: "aardvark", Service: "api"},
		},
		PeerAddrs: map[netip.Addr]string{
			netip.MustParseAddr("127.0.0.2"): "alpha",
			netip.MustParseAddr("127.0.0.4"): "aardvark",
		},
		Peers: []string{"aardvark", "alpha", "gamma"},
	}
	mustSync(t, dp2, second)

	ids2 := peerIDs(t, dp2)
	if ids2["alpha"] != ids1["alpha"] || ids2["gamma"] != ids1["gamma"] {
		t.Errorf("ids after the restart: got %v, want alpha and gamma as before %v", ids2, ids1)
	}
	if _, ok := ids2["beta"]; ok {
		t.Errorf("beta (removed while down) still has an id: %v", ids2)
	}
	if id := ids2["aardvark"]; id == 0 || slices.Contains(slices.Collect(maps.Values(ids1)), id) {
		t.Errorf("aardvark got id %d, want one no peer had before (%v)", id, ids1)
	}
	wantVIPs := map[netip.AddrPort]VIP{
		netip.AddrPortFrom(vip1, 0): {Addr: netip.AddrPortFrom(vip1, 0), PeerID: ids2["alpha"], ServiceID: serviceID("web")},
		netip.AddrPortFrom(vip3, 0): {Addr: netip.AddrPortFrom(vip3, 0), PeerID: ids2["aardvark"], ServiceID: serviceID("api")},
	}
	if got := vipSet(t, dp2); !maps.Equal(got, wantVIPs) {
		t.Errorf("VIPs after the restart: got %v, want %v (beta's, the IPv6 one and the stray one deleted)", got, wantVIPs)
	}
	wantAddrs := map[netip.Addr]uint32{
		netip.MustParseAddr("127.0.0.2"): ids2["alpha"],
		netip.MustParseAddr("127.0.0.4"): ids2["aardvark"],
	}
	if got := peerAddrSet(t, dp2); !maps.Equal(got, wantAddrs) {
		t.Errorf("peer addresses after the restart: got %v, want %v", got, wantAddrs)
	}
	byID, err := dp2.PeerCounters()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := byID[ids1["beta"]]; ok {
		t.Errorf("beta's counters (id %d) survived its release: %v", ids1["beta"], byID)
	}
	if got, want := txPackets(t, dp2), map[string]uint64{"alpha": 5}; !maps.Equal(got, want) {
		t.Errorf("tx packets after the restart: got %v, want %v (alpha's own, nobody else's)", got, want)
	}
	e.send("127.0.0.2", 2)
	e.send("127.0.0.4", 4)
	e.send("127.0.0.3", 1) // beta's old address: no longer counted
	if got, want := txPackets(t, dp2), map[string]uint64{"alpha": 7, "aardvark": 4}; !maps.Equal(got, want) {
		t.Errorf("tx packets counting on: got %v, want %v", got, want)
	}
	// The same state again changes nothing.
	mustSync(t, dp2, second)
	if got := peerIDs(t, dp2); !maps.Equal(got, ids2) {
		t.Errorf("ids after a second Sync: got %v, want %v", got, ids2)
	}
	if got := vipSet(t, dp2); !maps.Equal(got, wantVIPs) {
		t.Errorf("VIPs after a second Sync: got %v, want %v", got, wantVIPs)
	}

	// Without the registry (a peerd that numbered peers in memory ran
	// before), the pinned counters cannot be attributed: they go, and the
	// peers are numbered afresh in name order.
	if err := dp2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(e.cfg.PinDir, peerRegistryFile)); err != nil {
		t.Fatal(err)
	}
	dp3 := e.load()
	mustSync(t, dp3, second)
	if got, want := peerIDs(t, dp3), map[string]uint32{"aardvark": 1, "alpha": 2, "gamma": 3}; !maps.Equal(got, want) {
		t.Errorf("ids on a new registry: got %v, want %v", got, want)
	}
	if got, err := dp3.PeerCounters(); err != nil || len(got) != 0 {
		t.Errorf("counters kept without a registry: got %v, %v; want none", got, err)
	}
	e.send("127.0.0.2", 1)
	if got, want := txPackets(t, dp3), map[string]uint64{"alpha": 1}; !maps.Equal(got, want) {
		t.Errorf("tx packets on a new registry: got %v, want %v", got, want)
	}
}

// TestSyncLayersOff: Sync skips layers that are not loaded, and the
// registry is not even created without the capture and TC layers.
func TestSyncLayersOff(t *testing.T) {
	testutil.RequireBPF(t)
	pinDir := newPinDir(t)
	dp, err := load(Config{PinDir: pinDir})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close(context.Background())
	mustSync(t, dp, Desired{
		VIPs:          map[netip.Addr]VIPTarget{vip1: {Peer: "alpha", Service: "web"}},
		FastPathPorts: []uint16{8080},
	})
	if _, err := os.Stat(filepath.Join(pinDir, peerRegistryFile)); !os.IsNotExist(err) {
		t.Errorf("registry created with no layer that needs it: %v", err)
	}
	if err := dp.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := dp.Sync(Desired{}); err == nil {
		t.Error("Sync on a closed dataplane: got nil, want an error")
	}
}
