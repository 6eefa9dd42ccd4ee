package dataplane

import (
	"fmt"
	"net/netip"
)

// routeProtocol is the rtnetlink protocol (RTPROT_*) peerd's unreachable
// routes carry, so `ip route show proto 0x70` lists them (0x70 = 112, an
// unassigned value of /etc/iproute2/rt_protos).
const routeProtocol = 0x70

// nodeAddr is an address of one of the node's interfaces.
type nodeAddr struct {
	Iface  string
	Prefix netip.Prefix // the address with its subnet length
}

// nodeRoute is a route of the node's main table.
type nodeRoute struct {
	Iface string // "" for a route without an output interface
	Dst   netip.Prefix
	Desc  string // for messages: "10.0.0.0/8 via 192.0.2.1 dev eth0"
	// Peerd: an unreachable route of peerd's (routeProtocol), left by
	// an earlier Start, maybe for a range since changed.
	Peerd bool
}

// unreachableFlag names the agent flag that sets the range of p's family.
func unreachableFlag(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "-virtual-ip-cidr"
	}
	return "-virtual-ip6-cidr"
}

// checkUnreachableOverlap refuses a virtual IP range that overlaps an
// address of the node's interfaces (or the subnet the address is on) or a
// route of its main table other than a default route and peerd's own
// unreachable routes: traffic to it would either be
// captured away from a real destination or, outside the captured cgroup,
// be sent to the network the unreachable route is meant to keep it from.
func checkUnreachableOverlap(ranges []netip.Prefix, addrs []nodeAddr, routes []nodeRoute) error {
	for _, p := range ranges {
		for _, a := range addrs {
			if a.Prefix.Addr().Is4() != p.Addr().Is4() || a.Prefix.Addr().IsLinkLocalUnicast() {
				continue
			}
			if p.Contains(a.Prefix.Addr()) || a.Prefix.Masked().Overlaps(p) {
				return fmt.Errorf("dataplane: virtual IP range %s overlaps address %s of interface %s: traffic to the range could not be kept on the node (change %s)", p, a.Prefix, a.Iface, unreachableFlag(p))
			}
		}
		for _, r := range routes {
			if r.Dst.Addr().Is4() != p.Addr().Is4() || r.Dst.Bits() == 0 || r.Peerd {
				continue
			}
			if r.Dst.Overlaps(p) {
				return fmt.Errorf("dataplane: virtual IP range %s overlaps route %s: traffic to the range would leave the node (change %s)", p, r.Desc, unreachableFlag(p))
			}
		}
	}
	return nil
}

// routeString is how Status shows an unreachable route.
func routeString(p netip.Prefix) string {
	return "unreachable " + p.String()
}

// validateUnreachable checks the configured prefixes themselves.
func validateUnreachable(ps []netip.Prefix) error {
	seen := map[netip.Prefix]bool{}
	for _, p := range ps {
		if !p.IsValid() {
			return fmt.Errorf("dataplane: invalid unreachable prefix %s", p)
		}
		if p.Addr().Is4In6() {
			return fmt.Errorf("dataplane: unreachable prefix %s: give IPv4 ranges as IPv4 (%s)", p, unreachableFlag(p))
		}
		if p.Bits() == 0 {
			return fmt.Errorf("dataplane: unreachable prefix %s would make every address unreachable (change %s)", p, unreachableFlag(p))
		}
		if p != p.Masked() {
			return fmt.Errorf("dataplane: unreachable prefix %s has host bits set; did you mean %s?", p, p.Masked())
		}
		if seen[p] {
			return fmt.Errorf("dataplane: unreachable prefix %s listed twice", p)
		}
		seen[p] = true
	}
	return nil
}
