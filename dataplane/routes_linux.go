package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nodeNetwork lists the addresses of the interfaces and the main-table
// routes of the calling thread's network namespace.
func nodeNetwork() ([]nodeAddr, []nodeRoute, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, nil, fmt.Errorf("list interfaces: %w", err)
	}
	names := map[int]string{}
	var addrs []nodeAddr
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
		as, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, nil, fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
		}
		for _, a := range as {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok || a.IPNet == nil {
				continue
			}
			ones, _ := a.Mask.Size()
			addrs = append(addrs, nodeAddr{Iface: l.Attrs().Name, Prefix: netip.PrefixFrom(ip.Unmap(), ones)})
		}
	}
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, nil, fmt.Errorf("list routes: %w", err)
	}
	var routes []nodeRoute
	for _, r := range rs {
		if r.Dst == nil {
			continue // default route
		}
		ip, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		nr := nodeRoute{Iface: names[r.LinkIndex], Dst: netip.PrefixFrom(ip.Unmap(), ones)}
		nr.Desc = nr.Dst.String()
		switch {
		case r.Type == unix.RTN_UNREACHABLE:
			nr.Desc = "unreachable " + nr.Desc
		case r.Gw != nil:
			nr.Desc += " via " + r.Gw.String()
		}
		if nr.Iface != "" {
			nr.Desc += " dev " + nr.Iface
		}
		if r.Protocol == routeProtocol && r.Type == unix.RTN_UNREACHABLE {
			nr.Desc += " (peerd)"
			nr.Peerd = true
		}
		routes = append(routes, nr)
	}
	return addrs, routes, nil
}

// checkUnreachable is checkUnreachableOverlap against the calling thread's
// network namespace.
func checkUnreachable(ps []netip.Prefix) error {
	if len(ps) == 0 {
		return nil
	}
	addrs, routes, err := nodeNetwork()
	if err != nil {
		return fmt.Errorf("dataplane: check the virtual IP ranges against the node's network: %w", err)
	}
	return checkUnreachableOverlap(ps, addrs, routes)
}

func unreachableRoute(p netip.Prefix) *netlink.Route {
	family := netlink.FAMILY_V4
	if p.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	return &netlink.Route{
		Dst:      &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		Type:     unix.RTN_UNREACHABLE,
		Table:    unix.RT_TABLE_MAIN,
		Protocol: routeProtocol,
		Family:   family,
	}
}

// installUnreachable adds (or replaces: idempotent) an unreachable route
// for each prefix in the calling thread's network namespace.
func installUnreachable(ps []netip.Prefix) ([]string, error) {
	var out []string
	for _, p := range ps {
		if err := netlink.RouteReplace(unreachableRoute(p)); err != nil {
			return nil, fmt.Errorf("install unreachable route %s: %w", p, err)
		}
		out = append(out, routeString(p))
	}
	return out, nil
}

// removeUnreachable deletes peerd's unreachable routes for ps; absent ones
// are not an error.
func removeUnreachable(ps []netip.Prefix) error {
	var errs []error
	for _, p := range ps {
		if err := netlink.RouteDel(unreachableRoute(p)); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove unreachable route %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// removeAllUnreachable deletes every unreachable route of peerd's
// (routeProtocol) in the calling thread's network namespace: the package
// Cleanup, which has no configuration to name the ranges.
func removeAllUnreachable() error {
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN, Protocol: routeProtocol}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("list peerd's unreachable routes: %w", err)
	}
	var errs []error
	for _, r := range rs {
		if r.Type != unix.RTN_UNREACHABLE {
			continue
		}
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove unreachable route %s: %w", r.Dst, err))
		}
	}
	return errors.Join(errs...)
}
