package state

import (
	"fmt"
	"net"
	"net/netip"
)

// Virtual IP range defaults.
const (
	// DefaultVirtualIPv4Range is Consul's and the issue's: the reserved
	// "future use" block, never routed on the Internet.
	DefaultVirtualIPv4Range = "240.0.0.0/4"
	// DefaultVirtualIPv6Range is a unique local (RFC 4193) /48 whose global
	// ID spells "peerd" (70 65 65 72 64).
	DefaultVirtualIPv6Range = "fd70:6565:7264::/48"
	// Ranges narrower than these are refused: they would fill up at once.
	minVirtualIPv4Bits = 28
	minVirtualIPv6Bits = 124
)

// ParseVirtualIPRange parses a virtual IP range of the given family (4 or
// 6): a CIDR that is a network (no host bits set) and at least 16 addresses
// wide. The error says how to fix the value.
func ParseVirtualIPRange(s string, family int) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR: write it as network/length, e.g. %s", s, defaultRange(family))
	}
	a := p.Addr()
	if family == 4 && !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 range, e.g. %s", s, DefaultVirtualIPv4Range)
	}
	if family == 6 && (!a.Is6() || a.Is4In6()) {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv6 range, e.g. %s", s, DefaultVirtualIPv6Range)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q is not a network (host bits are set): did you mean %s?", s, p.Masked())
	}
	minBits := minVirtualIPv4Bits
	if family == 6 {
		minBits = minVirtualIPv6Bits
	}
	if p.Bits() > minBits {
		return netip.Prefix{}, fmt.Errorf("%q is too small: use a /%d or wider range", s, minBits)
	}
	return p, nil
}

func defaultRange(family int) string {
	if family == 6 {
		return DefaultVirtualIPv6Range
	}
	return DefaultVirtualIPv4Range
}

// CheckVirtualIPRangeOverlap refuses a range that overlaps one of the
// node's interface networks: the node could no longer reach those hosts
// once the dataplane captures the range.
func CheckVirtualIPRangeOverlap(p netip.Prefix, addrs []net.Addr) error {
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		ones, _ := ipn.Mask.Size()
		if ip.Is4() && ones > 32 {
			ones -= 96
		}
		ifNet, err := ip.Prefix(ones)
		if err != nil {
			continue
		}
		if ifNet.Overlaps(p) {
			return fmt.Errorf("range %s overlaps this node's interface address %s: pick a range no interface uses", p, ipn)
		}
	}
	return nil
}

// vipRange is the usable part of a range: its first (network) and last
// (broadcast-like) addresses are never handed out.
type vipRange struct {
	prefix      netip.Prefix
	first, last netip.Addr
}

func newVIPRange(p netip.Prefix) vipRange {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	last, _ := netip.AddrFromSlice(b)
	return vipRange{prefix: p, first: p.Addr().Next(), last: last.Prev()}
}

func (r vipRange) contains(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && r.prefix.Contains(a) && a.Compare(r.first) >= 0 && a.Compare(r.last) <= 0
}

// allocator hands out the lowest free addresses of a range in increasing
// order. Each call is amortised O(1) past the used addresses it skips.
type allocator struct {
	r    vipRange
	used map[netip.Addr]bool
	cur  netip.Addr
}

func newAllocator(r vipRange) *allocator {
	return &allocator{r: r, used: map[netip.Addr]bool{}, cur: r.first}
}

func (a *allocator) markUsed(s string) {
	if ip, err := netip.ParseAddr(s); err == nil {
		a.used[ip] = true
	}
}

// next returns the lowest free address, or false when the range is full.
func (a *allocator) next() (netip.Addr, bool) {
	for ; a.cur.IsValid() && a.cur.Compare(a.r.last) <= 0; a.cur = a.cur.Next() {
		if !a.used[a.cur] {
			ip := a.cur
			a.used[ip] = true
			a.cur = a.cur.Next()
			return ip, true
		}
	}
	return netip.Addr{}, false
}
