package state

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
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
