package dataplane

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCheckUnreachableOverlap(t *testing.T) {
	pp := netip.MustParsePrefix
	addrs := []nodeAddr{
		{"lo", pp("127.0.0.1/8")},
		{"eth0", pp("192.0.2.10/24")},
		{"eth0", pp("fe80::1/64")},
		{"eth0", pp("2001:db8::10/64")},
	}
	routes := []nodeRoute{
		{"eth0", pp("192.0.2.0/24"), "192.0.2.0/24 dev eth0", false},
		{"eth1", pp("10.0.0.0/8"), "10.0.0.0/8 via 192.0.2.1 dev eth1", false},
		{"", pp("240.0.0.0/4"), "unreachable 240.0.0.0/4 (peerd)", true},
		{"", pp("100.64.0.0/10"), "unreachable 100.64.0.0/10", false},
		{"eth0", pp("0.0.0.0/0"), "0.0.0.0/0 via 192.0.2.1 dev eth0", false},
	}
	for _, c := range []struct {
		name    string
		ranges  []netip.Prefix
		wantErr string // "" = accepted
	}{
		{"class E, our own route from the last Start", []netip.Prefix{pp("240.0.0.0/4")}, ""},
		{"unrelated IPv6 range", []netip.Prefix{pp("fd00:f00d::/64")}, ""},
		{"link-local addresses do not count", []netip.Prefix{pp("fe80::/10")}, ""},
		{"a default route does not count", []netip.Prefix{pp("198.51.100.0/24")}, ""},
		{"contains an interface address", []netip.Prefix{pp("192.0.0.0/16")}, "overlaps address 192.0.2.10/24 of interface eth0"},
		{"inside an interface's subnet", []netip.Prefix{pp("192.0.2.128/25")}, "overlaps address 192.0.2.10/24 of interface eth0: traffic to the range could not be kept on the node (change -virtual-ip-cidr)"},
		{"IPv6 address", []netip.Prefix{pp("2001:db8::/32")}, "interface eth0: traffic to the range could not be kept on the node (change -virtual-ip6-cidr)"},
		{"inside a routed network", []netip.Prefix{pp("10.96.0.0/12")}, "overlaps route 10.0.0.0/8 via 192.0.2.1 dev eth1"},
		{"a changed range over peerd's earlier route", []netip.Prefix{pp("224.0.0.0/3")}, ""},
		{"someone else's unreachable route", []netip.Prefix{pp("100.64.0.0/16")}, "overlaps route unreachable 100.64.0.0/10"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := checkUnreachableOverlap(c.ranges, addrs, routes)
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.wantErr != "" && err == nil:
				t.Fatal("accepted, want refused")
			case c.wantErr != "" && !strings.Contains(err.Error(), c.wantErr):
				t.Fatalf("error %q does not say %q", err, c.wantErr)
			}
		})
	}
}

func TestValidateUnreachable(t *testing.T) {
	pp := netip.MustParsePrefix
	if err := validateUnreachable([]netip.Prefix{pp("240.0.0.0/4"), pp("fd00::/8")}); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"240.0.0.1/4":   "did you mean 240.0.0.0/4",
		"0.0.0.0/0":     "every address",
		"::ffff:0:0/96": "give IPv4 ranges as IPv4",
	} {
		if err := validateUnreachable([]netip.Prefix{pp(in)}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error saying %q", in, err, want)
		}
	}
	if err := validateUnreachable([]netip.Prefix{pp("240.0.0.0/4"), pp("240.0.0.0/4")}); err == nil {
		t.Error("a prefix listed twice was accepted")
	}
	if err := validateUnreachable([]netip.Prefix{{}}); err == nil {
		t.Error("the zero prefix was accepted")
	}
}
