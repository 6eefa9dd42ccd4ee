package l7proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/peerd/peerd/internal/cgroupfs"
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

// PodUIDMeta is the service meta key a registration uses to declare the
// Kubernetes pod its processes run in, by the pod's metadata.uid (a UUID;
// the downward API gives it), so that connections captured from any of
// the pod's containers are made with its identity.
const PodUIDMeta = "peerd-pod-uid"

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
// with id cgroupID, among the services registered on this node. The first
// rule that names one decides:
//
//  1. exact: a registration whose meta peerd-cgroup (CgroupMeta) is that
//     cgroup;
//  2. ancestor: a registration whose peerd-cgroup is the nearest ancestor
//     of that cgroup strictly below the captured cgroup (Config.CgroupRoot):
//     a service registered with its pod's or its systemd unit's cgroup
//     covers the containers and sub-cgroups below it;
//  3. pod: a registration whose meta peerd-pod-uid (PodUIDMeta) is the UID
//     of the Kubernetes pod the cgroup belongs to (cgroupfs.PodUID).
//
// Rules 2 and 3 need Config.CgroupPath. ok is false when no registration
// claims the cgroup (or the terminator has no CgroupID resolver). Safe for
// concurrent use; it may walk the cgroup tree on a cgroup it has not seen.
func (p *Proxy) ServiceOfCgroup(cgroupID uint64) (service string, ok bool) {
	if p.cfg.CgroupID == nil {
		return "", false
	}
	_, svcs, err := p.cfg.View().NodeServices(nil, "", p.cfg.NodeName)
	if err != nil {
		return "", false
	}
	claims := map[uint64]string{} // cgroup id -> service claiming it
	pods := map[string]string{}   // pod UID -> service claiming it
	for _, svc := range svcs {
		if path := svc.Meta[CgroupMeta]; path != "" {
			if id, err := p.cfg.CgroupID(path); err == nil {
				if _, dup := claims[id]; !dup {
					claims[id] = svc.Service
				}
			}
		}
		if u, err := cgroupfs.ParseUID(svc.Meta[PodUIDMeta]); err == nil {
			if _, dup := pods[u]; !dup {
				pods[u] = svc.Service
			}
		}
	}
	if s, ok := claims[cgroupID]; ok {
		return s, true
	}
	if p.cfg.CgroupPath == nil || (len(claims) == 0 && len(pods) == 0) {
		return "", false
	}
	path, err := p.cfg.CgroupPath(cgroupID)
	if err != nil {
		p.log.Debug("cgroup of a captured caller not found", "cgroup_id", cgroupID, "err", err)
		return "", false
	}
	root := filepath.Clean(p.cfg.CgroupRoot)
	for dir := filepath.Dir(path); dir != root && cgroupfs.Within(root, dir); dir = filepath.Dir(dir) {
		if id, err := p.cfg.CgroupID(dir); err == nil {
			if s, ok := claims[id]; ok {
				return s, true
			}
		}
	}
	if u, ok := cgroupfs.PodUID(path); ok {
		if s, ok := pods[u]; ok {
			return s, true
		}
	}
	return "", false
}

// ServeTransparent serves ln, a capture listener opened elsewhere (in a
// workload's network namespace), like the configured transparent
// listeners: each connection is carried to the virtual IP the workload
// dialled, as the service of its cgroup. It returns at once; serving stops
// when ln is closed (by the caller, or by Close). It fails after Close.
func (p *Proxy) ServeTransparent(ln net.Listener) error {
	if p.cfg.Capture == nil {
		return errors.New("l7proxy: serve a workload transparent listener: the terminator has no capture layer (Config.Capture)")
	}
	return p.serveExtra(ln, "a workload transparent listener", p.handleCaptured)
}

// ServeUpstream serves ln, an explicit upstream listener opened elsewhere
// (in a workload's network namespace), as up: its connections go to
// up.DestinationName with up.Caller's identity. The caller must open
// upstreams of the workload's own service only (ServiceUpstreams of its
// owner). It returns at once; serving stops when ln is closed (by the
// caller, or by Close). It fails after Close.
func (p *Proxy) ServeUpstream(up Upstream, ln net.Listener) error {
	if up.Caller == "" || up.DestinationName == "" {
		return errors.New("l7proxy: serve upstream: the upstream needs a caller and a destination service")
	}
	return p.serveExtra(ln, "a workload upstream listener", func(c net.Conn) { p.handleOutbound(c, up) })
}

// serveExtra accepts on ln until it closes; Close closes it too.
func (p *Proxy) serveExtra(ln net.Listener, what string, handle func(net.Conn)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("l7proxy: serve %s: the proxy is closed", what)
	}
	p.extra[ln] = struct{}{}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		acceptLoop(ln, p.log.With("addr", ln.Addr().String()), what, handle, time.Sleep)
		p.mu.Lock()
		delete(p.extra, ln)
		p.mu.Unlock()
	}()
	return nil
}
