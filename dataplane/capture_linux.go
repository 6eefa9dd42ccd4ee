package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/peerd/peerd/bpf"
	"github.com/peerd/peerd/internal/netutil"
)

var captureCounterNames = []string{"connects", "rewrites", "skip_mark", "skip_cgroup", "skip_listener", "map_errors", "handovers", "netns_not_ready", "netns_rewrites", "netns_event_drops"}

type captureLayer struct {
	objs   bpf.CaptureObjects
	links  []link.Link
	reused bool
	// events reads netns_events; ReadNetnsEvent uses it without d.mu.
	events *ringbuf.Reader
	// routes are the unreachable routes installed at Start (routes_linux.go).
	routes []string
	// netns: the workload-namespace mode is on (captureNetnsNeeds met).
	netns bool
}

// cgroupKeep accepts a pinned cgroup link that is attached to cgroup id
// cgID with attach type at.
func cgroupKeep(cgID uint64, at ebpf.AttachType) func(*link.Info) bool {
	return func(info *link.Info) bool {
		cg := info.Cgroup()
		return cg != nil && cg.CgroupId == cgID && ebpf.AttachType(cg.AttachType) == at
	}
}

// attachCgroupProgs attaches (or updates in place) each program to the
// configured cgroup with a link pinned at dir/link_<name>.
func attachCgroupProgs(cfg *Config, dir string, progs []cgroupProg, u *undo) (links []link.Link, reused bool, err error) {
	links, reused, err = attachCgroupProgsTo(cfg.CgroupPath, dir, "", progs, u)
	if err != nil {
		return nil, false, err
	}
	for _, p := range progs {
		if err := pinProgram(dir, p.name, p.prog); err != nil {
			return nil, false, err
		}
	}
	return links, reused, nil
}

// attachCgroupProgsTo attaches (or updates in place) each program to the
// cgroup at path with a link pinned at dir/link_<name><suffix>.
func attachCgroupProgsTo(path, dir, suffix string, progs []cgroupProg, u *undo) (links []link.Link, reused bool, err error) {
	cgID, err := CgroupID(path)
	if err != nil {
		return nil, false, err
	}
	reused = true
	for _, p := range progs {
		l, r, err := attachPinned(filepath.Join(dir, "link_"+p.name+suffix), p.prog, cgroupKeep(cgID, p.attach), func() (link.Link, error) {
			return link.AttachCgroup(link.CgroupOptions{Path: path, Attach: p.attach, Program: p.prog})
		}, u)
		if err != nil {
			return nil, false, fmt.Errorf("attach %s to %s: %w", p.name, path, err)
		}
		reused = reused && r
		links = append(links, l)
	}
	return links, reused, nil
}

type cgroupProg struct {
	name   string
	prog   *ebpf.Program
	attach ebpf.AttachType
}

func loadCapture(cfg *Config, dir string, log *slog.Logger) (_ *captureLayer, err error) {
	spec, err := bpf.LoadCapture()
	if err != nil {
		return nil, fmt.Errorf("read capture object: %w", err)
	}
	var hostNetns uint64
	nerr := probe(LayerCapture, captureNetnsNeeds, cfg.probeOverride)
	if nerr == nil {
		hostNetns, nerr = ownNetnsCookie()
	}
	if nerr != nil {
		log.Warn("capture without workload network namespaces: every connect is treated as the dataplane namespace's", "reason", nerr.Error())
	}
	vars := map[string]any{
		"netns_aware":   boolByte(nerr == nil),
		"host_netns":    hostNetns,
		"listener_v4":   word4(cfg.ListenerV4),
		"listener_port": cfg.ListenerPort,
		"own_mark":      cfg.Mark,
		"daemon_cgid":   cfg.DaemonCgroupID,
	}
	if cfg.ListenerV6.IsValid() {
		vars["listener_v6"] = words(cfg.ListenerV6)
	}
	for name, v := range vars {
		vs, ok := spec.Variables[name]
		if !ok {
			return nil, fmt.Errorf("capture object has no variable %s", name)
		}
		if err := vs.Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	if err := pinMaps(spec, bpf.CaptureMapVips, bpf.CaptureMapOrigCookie, bpf.CaptureMapOrigTuple, bpf.CaptureMapCapStats,
		bpf.CaptureMapWorkloadNetns, bpf.CaptureMapNetnsAnnounced, bpf.CaptureMapNetnsEvents); err != nil {
		return nil, err
	}
	l := &captureLayer{netns: nerr == nil}
	if _, err := loadPinned(spec, dir, &l.objs); err != nil {
		return nil, fmt.Errorf("load capture programs: %w", err)
	}
	var u undo
	defer func() {
		if err != nil {
			u.rollback()
			_ = l.objs.Close()
		}
	}()
	// Before the programs attach: from the first captured connect on,
	// what is not captured cannot leave the node either.
	if l.routes, err = installUnreachable(cfg.UnreachablePrefixes); err != nil {
		return nil, err
	}
	if l.events, err = ringbuf.NewReader(l.objs.NetnsEvents); err != nil {
		return nil, fmt.Errorf("open the netns_events ring buffer: %w", err)
	}
	u.add(func() { _ = l.events.Close() })
	l.links, l.reused, err = attachCgroupProgs(cfg, dir, []cgroupProg{
		{"connect4", l.objs.CaptureConnect4, ebpf.AttachCGroupInet4Connect},
		{"connect6", l.objs.CaptureConnect6, ebpf.AttachCGroupInet6Connect},
		{"sockops", l.objs.CaptureSockops, ebpf.AttachCGroupSockOps},
	}, &u)
	if err != nil {
		return nil, err
	}
	u.commit()
	return l, nil
}

func (l *captureLayer) close() error {
	var errs []error
	if l.events != nil {
		errs = append(errs, l.events.Close())
	}
	for _, lk := range l.links {
		errs = append(errs, lk.Close())
	}
	errs = append(errs, l.objs.Close())
	return errors.Join(errs...)
}

func (l *captureLayer) status(s *LayerStatus) {
	s.Loaded, s.Reused, s.AttachMode = true, l.reused, "cgroup-link"
	s.Routes, s.WorkloadNetns = l.routes, l.netns
	s.Maps = map[string]int{}
	for name, m := range map[string]*ebpf.Map{"vips": l.objs.Vips, "orig_cookie": l.objs.OrigCookie, "orig_tuple": l.objs.OrigTuple, "workload_netns": l.objs.WorkloadNetns} {
		n, err := count(m)
		if err != nil {
			s.fail(err)
		}
		s.Maps[name] = n
	}
	c, err := readCounters(l.objs.CapStats, captureCounterNames)
	if err != nil {
		s.fail(err)
	}
	s.Counters = c
}

// SetVIP makes connections from the cgroup to ip:port (port 0: every port
// of ip) go to the terminator's outbound listener, recorded as peerID's
// serviceID. IPv4 addresses are matched by connect4 and, as ::ffff:a.b.c.d,
// by dual-stack sockets in connect6.
func (d *Dataplane) SetVIP(ip netip.Addr, port uint16, peerID, serviceID uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.layerOn(d.capture); err != nil {
		return err
	}
	if !ip.IsValid() {
		return errors.New("set VIP: invalid address")
	}
	k := bpf.CaptureVipKey{Addr: words(ip), Port: port}
	v := bpf.CaptureVipVal{PeerId: peerID, ServiceId: serviceID}
	if err := d.capture.objs.Vips.Put(&k, &v); err != nil {
		return fmt.Errorf("set VIP %s: %w", netip.AddrPortFrom(ip, port), err)
	}
	return nil
}

// DeleteVIP stops capturing ip:port. Deleting an absent VIP is not an
// error.
func (d *Dataplane) DeleteVIP(ip netip.Addr, port uint16) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.layerOn(d.capture); err != nil {
		return err
	}
	k := bpf.CaptureVipKey{Addr: words(ip), Port: port}
	if err := d.capture.objs.Vips.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete VIP %s: %w", netip.AddrPortFrom(ip, port), err)
	}
	return nil
}

// VIPs lists the capture map.
func (d *Dataplane) VIPs() ([]VIP, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.layerOn(d.capture); err != nil {
		return nil, err
	}
	var out []VIP
	var k bpf.CaptureVipKey
	var v bpf.CaptureVipVal
	it := d.capture.objs.Vips.Iterate()
	for it.Next(&k, &v) {
		out = append(out, VIP{Addr: netip.AddrPortFrom(fromWords(k.Addr), k.Port), PeerID: v.PeerId, ServiceID: v.ServiceId})
	}
	return out, it.Err()
}

// OriginalDestination returns where conn, a connection the terminator
// accepted on its outbound listener, was originally going, and the cgroup
// id of the caller. ok is false (with a nil error) for a connection that
// was not captured, e.g. one dialed to the listener directly.
//
// How the accepted socket finds the record: connect4/6 store it under the
// *client* socket's cookie, which the terminator cannot see. The capture
// sockops program runs on the client socket at ACTIVE_ESTABLISHED (when
// the SYN-ACK arrives, before the client's ACK is sent, so before accept()
// on the listener can return) and moves the record to a map keyed by the
// client's 4-tuple {src = client ip:port, dst = listener ip:port}. The
// accepted socket sees the same tuple reversed (RemoteAddr = client,
// LocalAddr = listener), so the lookup needs no cookie. The entry is
// deleted here: call it once per accepted connection.
func (d *Dataplane) OriginalDestination(conn net.Conn) (netip.AddrPort, uint64, bool, error) {
	o, ok, err := d.Origin(conn)
	return o.Dest, o.CgroupID, ok, err
}

// Origin is OriginalDestination with the peer and service ids and the
// network namespace of the connection. conn must be a syscall.Conn (a
// *net.TCPConn): the lookup needs its namespace cookie, since two
// workload namespaces see identical loopback tuples.
func (d *Dataplane) Origin(conn net.Conn) (Origin, bool, error) {
	remote, err := tcpAddrPort(conn.RemoteAddr())
	if err != nil {
		return Origin{}, false, err
	}
	local, err := tcpAddrPort(conn.LocalAddr())
	if err != nil {
		return Origin{}, false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.layerOn(d.capture); err != nil {
		return Origin{}, false, err
	}
	var ns uint64 // keys carry 0 without the workload-namespace mode
	if d.capture.netns {
		sc, ok := conn.(syscall.Conn)
		if !ok {
			return Origin{}, false, fmt.Errorf("original destination: %T has no file descriptor (pass the accepted *net.TCPConn)", conn)
		}
		if ns, err = netutil.NetnsCookie(sc); err != nil {
			return Origin{}, false, fmt.Errorf("original destination of %s: %w", remote, err)
		}
	}
	k := bpf.CaptureTuple{Src: words(remote.Addr()), Dst: words(local.Addr()), Sport: remote.Port(), Dport: local.Port(), NetnsCookie: ns}
	var v bpf.CaptureOrigDst
	m := d.capture.objs.OrigTuple
	if err := m.Lookup(&k, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return Origin{}, false, nil
		}
		return Origin{}, false, fmt.Errorf("original destination of %s: %w", remote, err)
	}
	_ = m.Delete(&k)
	return Origin{
		Dest:        netip.AddrPortFrom(fromWords(v.Addr), v.Port),
		PeerID:      v.PeerId,
		ServiceID:   v.ServiceId,
		CgroupID:    v.CgroupId,
		NetnsCookie: ns,
	}, true, nil
}

func tcpAddrPort(a net.Addr) (netip.AddrPort, error) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("original destination: %T is not a TCP address", a)
	}
	return ta.AddrPort(), nil
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
