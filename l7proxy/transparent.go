package l7proxy

import (
	"net"
	"net/netip"
	"time"
)

// Capture is the eBPF capture layer as the terminator sees it: for a
// connection accepted on the transparent listener, the destination the
// workload dialled and the cgroup it runs in. dataplane.Dataplane
// implements it; the two packages meet in the agent.
type Capture interface {
	OriginalDestination(c net.Conn) (dst netip.AddrPort, cgroupID uint64, ok bool, err error)
}

// CgroupMeta is the service meta key a registration uses to declare the
// cgroup v2 directory its processes run in (e.g. a systemd unit's), so that
// connections captured from that cgroup are made with its identity.
const CgroupMeta = "peerd-cgroup"

// serveTransparent accepts the connections the capture layer redirected to
// the terminator and carries each like an explicit upstream's: to the
// imported service owning the virtual IP that was dialled, as the local
// service the connection came from.
func (p *Proxy) serveTransparent(ln net.Listener) {
	acceptLoop(ln, p.log, "the transparent listener", p.handleCaptured, time.Sleep)
}

func (p *Proxy) handleCaptured(c net.Conn) {
	refuse := func(reason string, args ...any) {
		p.m.handshakeFail.WithLabelValues("transparent", reason).Inc()
		p.log.Info("transparent listener refused a connection", append([]any{"remote", c.RemoteAddr().String(), "reason", reason}, args...)...)
		c.Close()
	}
	dst, cgroupID, ok, err := p.cfg.Capture.OriginalDestination(c)
	if err != nil || !ok {
		refuse("not_captured", "err", err)
		return
	}
	st := p.cfg.View()
	_, vip, err := st.VirtualIPByAddr(nil, dst.Addr())
	if err != nil || vip == nil {
		refuse("unknown_virtual_ip", "destination", dst.String())
		return
	}
	src, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	caller, ok := p.callerOf(cgroupID, src.Addr().Unmap())
	if !ok {
		refuse("unknown_caller", "cgroup_id", cgroupID, "destination", dst.String())
		return
	}
	p.handleOutbound(c, Upstream{Caller: caller, DestinationName: vip.Service, DestinationPeer: vip.Peer, BindAddr: "transparent"})
}

// callerOf finds the local service a captured connection comes from: the
// one that declared the caller's cgroup (ServiceOfCgroup), or else the one
// registered with the connection's source address.
func (p *Proxy) callerOf(cgroupID uint64, src netip.Addr) (string, bool) {
	if svc, ok := p.ServiceOfCgroup(cgroupID); ok {
		return svc, true
	}
	if !src.IsValid() || src.IsLoopback() {
		return "", false
	}
	_, svcs, err := p.cfg.View().NodeServices(nil, "", p.cfg.NodeName)
	if err != nil {
		return "", false
	}
	for _, svc := range svcs {
		if a, err := netip.ParseAddr(svc.Address); err == nil && a.Unmap() == src {
			return svc.Service, true
		}
	}
	return "", false
}

// ServiceOfCgroup is the local service whose processes run in the cgroup
// with id cgroupID: the one registered on this node with service meta
// peerd-cgroup naming that cgroup. ok is false when no registration claims
// it (or the terminator has no CgroupID resolver).
func (p *Proxy) ServiceOfCgroup(cgroupID uint64) (service string, ok bool) {
	if p.cfg.CgroupID == nil {
		return "", false
	}
	_, svcs, err := p.cfg.View().NodeServices(nil, "", p.cfg.NodeName)
	if err != nil {
		return "", false
	}
	for _, svc := range svcs {
		if path := svc.Meta[CgroupMeta]; path != "" {
			if id, err := p.cfg.CgroupID(path); err == nil && id == cgroupID {
				return svc.Service, true
			}
		}
	}
	return "", false
}
