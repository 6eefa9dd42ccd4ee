package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-memdb"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestParseVirtualIPRange(t *testing.T) {
	for _, tc := range []struct {
		in     string
		family int
		err    string
	}{
		{"240.0.0.0/4", 4, ""},
		{"10.200.0.0/16", 4, ""},
		{"fd70:6565:7264::/48", 6, ""},
		{"240.0.0.1/4", 4, "not a network"},
		{"240.0.0.0", 4, "not a CIDR"},
		{"10.0.0.0/29", 4, "too small"},
		{"fd70::/125", 6, "too small"},
		{"fd70::/48", 4, "not an IPv4 range"},
		{"10.0.0.0/8", 6, "not an IPv6 range"},
		{"::ffff:10.0.0.0/104", 6, "not an IPv6 range"},
	} {
		_, err := ParseVirtualIPRange(tc.in, tc.family)
		if tc.err == "" && err != nil {
			t.Errorf("%s: %v", tc.in, err)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: got %v, want an error with %q", tc.in, err, tc.err)
		}
	}
}

func TestCheckVirtualIPRangeOverlap(t *testing.T) {
	_, lan, _ := net.ParseCIDR("10.1.2.3/24")
	lan.IP = net.ParseIP("10.1.2.3")
	addrs := []net.Addr{&net.IPNet{IP: net.ParseIP("127.0.0.1"), Mask: net.CIDRMask(8, 32)}, lan}
	if err := CheckVirtualIPRangeOverlap(netip.MustParsePrefix("240.0.0.0/4"), addrs); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"10.0.0.0/8", "10.1.2.0/28"} {
		err := CheckVirtualIPRangeOverlap(netip.MustParsePrefix(p), addrs)
		if err == nil || !strings.Contains(err.Error(), "10.1.2.3/24") {
			t.Errorf("%s: got %v, want an overlap with 10.1.2.3/24", p, err)
		}
	}
}

func TestAllocatorLowestFreeSkipsEnds(t *testing.T) {
	r := newVIPRange(netip.MustParsePrefix("10.0.0.0/28"))
	if r.first.String() != "10.0.0.1" || r.last.String() != "10.0.0.14" {
		t.Fatalf("usable %s-%s, want 10.0.0.1-10.0.0.14", r.first, r.last)
	}
	a := newAllocator(r)
	a.markUsed("10.0.0.1")
	a.markUsed("10.0.0.3")
	var got []string
	for {
		ip, ok := a.next()
		if !ok {
			break
		}
		got = append(got, ip.String())
	}
	if len(got) != 12 || got[0] != "10.0.0.2" || got[1] != "10.0.0.4" || got[11] != "10.0.0.14" {
		t.Fatalf("got %v", got)
	}
	r6 := newVIPRange(netip.MustParsePrefix("fd70:6565:7264::/48"))
	if r6.first.String() != "fd70:6565:7264::1" || r6.last.String() != "fd70:6565:7264:ffff:ffff:ffff:ffff:fffe" {
		t.Fatalf("usable %s-%s", r6.first, r6.last)
	}
}

func imported(peer, node, svc string) *RegisterRequest {
	return &RegisterRequest{PeerName: peer, Node: &Node{Node: node, Address: "10.9.9.9"},
		Service: &Service{ID: svc + "-1", Service: svc, Port: 8080}}
}

func TestVirtualIPsStoreRules(t *testing.T) {
	s := newTestStore(t)
	if err := s.VirtualIPsUpdate(1, &VirtualIPsRequest{Assign: []*VirtualIP{{Peer: "b", Service: "billing", IPv4: "240.0.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	// Another service may not take the address; the whole request fails.
	err := s.VirtualIPsUpdate(2, &VirtualIPsRequest{Assign: []*VirtualIP{
		{Peer: "b", Service: "ok", IPv4: "240.0.0.2"}, {Peer: "c", Service: "billing", IPv4: "240.0.0.1"}}})
	if !errors.Is(err, ErrVirtualIPInUse) {
		t.Fatalf("got %v, want ErrVirtualIPInUse", err)
	}
	if _, v, _ := s.VirtualIP(nil, "b", "ok"); v != nil {
		t.Fatalf("a refused request wrote %+v", v)
	}
	if err := s.VirtualIPsUpdate(3, &VirtualIPsRequest{Assign: []*VirtualIP{{Peer: "b", Service: "x", IPv4: "fd70::1"}}}); !errors.Is(err, ErrVirtualIPFormat) {
		t.Fatalf("got %v, want ErrVirtualIPFormat", err)
	}
	// A release is skipped while the service has instances.
	if err := s.Register(4, imported("b", "n1", "billing")); err != nil {
		t.Fatal(err)
	}
	if err := s.VirtualIPsUpdate(5, &VirtualIPsRequest{Release: []VirtualIPKey{{Peer: "b", Service: "billing"}}}); err != nil {
		t.Fatal(err)
	}
	if _, v, _ := s.VirtualIP(nil, "B", "Billing"); v == nil || v.IPv4 != "240.0.0.1" {
		t.Fatalf("got %+v, want the address kept (case-insensitively)", v)
	}
	if _, v, _ := s.VirtualIPByAddr(nil, netip.MustParseAddr("240.0.0.1")); v == nil || v.Service != "billing" {
		t.Fatalf("by address: got %+v", v)
	}
	if err := s.Deregister(6, &DeregisterRequest{PeerName: "b", Node: "n1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.VirtualIPsUpdate(7, &VirtualIPsRequest{Release: []VirtualIPKey{{Peer: "b", Service: "billing"}}}); err != nil {
		t.Fatal(err)
	}
	idx, all, _ := s.VirtualIPs(nil)
	if len(all) != 0 || idx != 7 {
		t.Fatalf("got %+v at %d, want none at 7", all, idx)
	}
}

func TestVirtualIPsSurviveSnapshotAndMirror(t *testing.T) {
	src := &fsm{store: newTestStore(t)}
	if err := src.store.VirtualIPsUpdate(1, &VirtualIPsRequest{Assign: []*VirtualIP{
		{Peer: "b", Service: "billing", IPv4: "240.0.0.1", IPv6: "fd70:6565:7264::1"}, {Peer: "b", Service: "web", IPv4: "240.0.0.2"}}}); err != nil {
		t.Fatal(err)
	}
	snap, _ := src.Snapshot()
	var buf bytes.Buffer
	if err := snap.(*fsmSnapshot).write(&buf); err != nil {
		t.Fatal(err)
	}
	dst := &fsm{store: newTestStore(t)}
	if err := dst.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if _, v, _ := dst.store.VirtualIPByAddr(nil, netip.MustParseAddr("fd70:6565:7264::1")); v == nil || v.IPv4 != "240.0.0.1" {
		t.Fatalf("got %+v after restore", v)
	}
	view, err := newMirrorView()
	if err != nil {
		t.Fatal(err)
	}
	db, _ := src.store.current()
	enc, err := encodeMirror(db, memdb.NewWatchSet())
	if err != nil {
		t.Fatal(err)
	}
	if err := view.apply(enc.data); err != nil {
		t.Fatal(err)
	}
	if _, all, _ := view.store.VirtualIPs(nil); len(all) != 2 {
		t.Fatalf("mirror holds %+v, want both virtual IPs", all)
	}
}

func startVIPServer(t *testing.T, dataDir string, mod func(*Config)) *Cluster {
	t.Helper()
	cfg := DevConfig()
	cfg.NodeName, cfg.NodeID = "s1", uuid.NewString()
	cfg.VirtualIPGrace = 300 * time.Millisecond
	if dataDir != "" {
		cfg.InMemory, cfg.DataDir = false, dataDir
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Shutdown(false) })
	waitFor(t, 10*time.Second, "leader", c.IsLeader)
	return c
}

func vipOf(c *Cluster, peer, svc string) *VirtualIP {
	_, v, _ := c.Store().VirtualIP(nil, peer, svc)
	return v
}

func waitVIP(t *testing.T, c *Cluster, peer, svc, want4, want6 string) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("%s/%s gets %s %s", peer, svc, want4, want6), func() bool {
		v := vipOf(c, peer, svc)
		return v != nil && v.IPv4 == want4 && v.IPv6 == want6
	})
}

func TestVirtualIPAssignedOnImportAndReleasedAfterGrace(t *testing.T) {
	c := startVIPServer(t, "", nil)
	registerService(t, c, "local") // local services get none
	apply(t, c, &Command{Type: CmdRegister, Register: imported("b", "n1", "billing")})
	waitVIP(t, c, "b", "billing", "240.0.0.1", "fd70:6565:7264::1")
	apply(t, c, &Command{Type: CmdRegisterBatch, Registers: []*RegisterRequest{imported("b", "n1", "web"), imported("a", "n2", "web")}})
	waitVIP(t, c, "a", "web", "240.0.0.2", "fd70:6565:7264::2")
	waitVIP(t, c, "b", "web", "240.0.0.3", "fd70:6565:7264::3")
	if v := vipOf(c, "", "local"); v != nil {
		t.Fatalf("local service got %+v", v)
	}

	// Gone and back within the grace period: same address.
	apply(t, c, &Command{Type: CmdDeregister, Deregister: &DeregisterRequest{PeerName: "b", Node: "n1", ServiceID: "billing-1"}})
	time.Sleep(100 * time.Millisecond)
	apply(t, c, &Command{Type: CmdRegister, Register: imported("b", "n1", "billing")})
	time.Sleep(400 * time.Millisecond)
	waitVIP(t, c, "b", "billing", "240.0.0.1", "fd70:6565:7264::1")

	// Gone for longer: released, and the lowest free address is reused.
	apply(t, c, &Command{Type: CmdDeregister, Deregister: &DeregisterRequest{PeerName: "b", Node: "n1", ServiceID: "billing-1"}})
	waitFor(t, 5*time.Second, "billing released", func() bool { return vipOf(c, "b", "billing") == nil })
	apply(t, c, &Command{Type: CmdRegister, Register: imported("c", "n3", "new")})
	waitVIP(t, c, "c", "new", "240.0.0.1", "fd70:6565:7264::1")
}

func TestVirtualIPsStableAcrossRestartAndRestore(t *testing.T) {
	dir := t.TempDir()
	c := startVIPServer(t, dir, nil)
	for _, s := range []string{"a", "b", "c"} {
		apply(t, c, &Command{Type: CmdRegister, Register: imported("p", "n1", s)})
	}
	waitVIP(t, c, "p", "c", "240.0.0.3", "fd70:6565:7264::3")
	var snap bytes.Buffer
	if _, err := c.SaveSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(false); err != nil {
		t.Fatal(err)
	}

	// A new leader (the same server restarted) keeps every address and
	// numbers a new service after them.
	c2 := startVIPServer(t, dir, nil)
	waitVIP(t, c2, "p", "b", "240.0.0.2", "fd70:6565:7264::2")
	apply(t, c2, &Command{Type: CmdRegister, Register: imported("p", "n1", "d")})
	waitVIP(t, c2, "p", "d", "240.0.0.4", "fd70:6565:7264::4")
	waitVIP(t, c2, "p", "a", "240.0.0.1", "fd70:6565:7264::1")

	// A snapshot restore brings back the addresses it held.
	if _, err := c2.RestoreSnapshot(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "restored state", func() bool { return vipOf(c2, "p", "d") == nil })
	waitVIP(t, c2, "p", "c", "240.0.0.3", "fd70:6565:7264::3")
}

func TestVirtualIPRangeFull(t *testing.T) {
	c := startVIPServer(t, "", func(cfg *Config) {
		cfg.VirtualIPv4Range, cfg.VirtualIPv6Range = "10.99.0.0/28", ""
	})
	var regs []*RegisterRequest
	for i := range 15 {
		regs = append(regs, imported("p", "n1", fmt.Sprintf("s%02d", i)))
	}
	apply(t, c, &Command{Type: CmdRegisterBatch, Registers: regs})
	waitFor(t, 5*time.Second, "14 addresses and one service left without", func() bool {
		_, all, _ := c.Store().VirtualIPs(nil)
		return len(all) == 14 && gaugeValue(c.metrics.vipUnassigned) == 1
	})
	if v := vipOf(c, "p", "s14"); v != nil {
		t.Fatalf("the last service got %+v from a full range", v)
	}
	waitVIP(t, c, "p", "s13", "10.99.0.14", "")
	// Once a service is gone past the grace period, the waiting one gets its
	// address.
	apply(t, c, &Command{Type: CmdDeregister, Deregister: &DeregisterRequest{PeerName: "p", Node: "n1", ServiceID: "s03-1"}})
	waitVIP(t, c, "p", "s14", "10.99.0.4", "")
	waitFor(t, 5*time.Second, "gauge back to 0", func() bool { return gaugeValue(c.metrics.vipUnassigned) == 0 })
}

func gaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return -1
	}
	return m.GetGauge().GetValue()
}
