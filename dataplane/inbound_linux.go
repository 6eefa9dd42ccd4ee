package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/peerd/peerd/bpf"
)

var inboundCounterNames = []string{"matched", "assigned", "no_socket", "assign_errors"}

// Slots of the inbound SOCKMAP (enum inbound_slot in inbound.c): the
// listener for IPv4 connections and the one for IPv6 connections.
const (
	inboundSlotV4 uint32 = 0
	inboundSlotV6 uint32 = 1
)

type inboundLayer struct {
	objs   bpf.InboundObjects
	link   link.Link
	reused bool
}

// prefixKey is p's LPM trie key: the 16-byte address (IPv4 as
// ::ffff:a.b.c.d) and the prefix length counted on it.
func prefixKey(p netip.Prefix) (bpf.InboundPrefixKey, error) {
	if !p.IsValid() {
		return bpf.InboundPrefixKey{}, fmt.Errorf("invalid prefix %s", p)
	}
	p = p.Masked()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	return bpf.InboundPrefixKey{Prefixlen: uint32(bits), Addr: words(p.Addr())}, nil
}

func keyPrefix(k bpf.InboundPrefixKey) netip.Prefix {
	a := fromWords(k.Addr)
	bits := int(k.Prefixlen)
	if a.Is4() {
		if bits < 96 {
			// A prefix wider than ::ffff:0:0/96 (only ever set as IPv6).
			return netip.PrefixFrom(netip.AddrFrom16(a.As16()), bits)
		}
		bits -= 96
	}
	return netip.PrefixFrom(a, bits)
}

// syncPrefixes makes the LPM trie m hold exactly prefixes.
func syncPrefixes(m *ebpf.Map, prefixes []netip.Prefix) error {
	want := map[bpf.InboundPrefixKey]bool{}
	for _, p := range prefixes {
		k, err := prefixKey(p)
		if err != nil {
			return err
		}
		want[k] = true
	}
	var stale []bpf.InboundPrefixKey
	var k bpf.InboundPrefixKey
	var v uint8
	it := m.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, k := range stale {
		if err := m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete prefix %s: %w", keyPrefix(k), err)
		}
	}
	for k := range want {
		if err := m.Put(&k, uint8(1)); err != nil {
			return fmt.Errorf("prefix %s: %w", keyPrefix(k), err)
		}
	}
	return nil
}

// netnsKeep accepts a pinned netns link of an sk_lookup program attached
// to the network namespace with inode ino.
func netnsKeep(ino uint64) func(*link.Info) bool {
	return func(info *link.Info) bool {
		ns := info.NetNs()
		return ns != nil && uint64(ns.NetnsInode) == ino && ebpf.AttachType(ns.AttachType) == ebpf.AttachSkLookup
	}
}

func loadInbound(cfg *Config, dir string) (_ *inboundLayer, err error) {
	spec, err := bpf.LoadInbound()
	if err != nil {
		return nil, fmt.Errorf("read inbound object: %w", err)
	}
	for name, v := range map[string]uint16{bpf.InboundVarPortLo: cfg.InboundPorts[0], bpf.InboundVarPortHi: cfg.InboundPorts[1]} {
		vs, ok := spec.Variables[name]
		if !ok {
			return nil, fmt.Errorf("inbound object has no variable %s", name)
		}
		if err := vs.Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	if err := pinMaps(spec, bpf.InboundMapInboundVips, bpf.InboundMapInboundSocks, bpf.InboundMapInboundStats); err != nil {
		return nil, err
	}
	l := &inboundLayer{}
	if _, err := loadPinned(spec, dir, &l.objs); err != nil {
		return nil, fmt.Errorf("load inbound program: %w", err)
	}
	var u undo
	defer func() {
		if err != nil {
			u.rollback()
			_ = l.objs.Close()
		}
	}()
	if err := syncPrefixes(l.objs.InboundVips, cfg.InboundPrefixes); err != nil {
		return nil, fmt.Errorf("inbound prefixes: %w", err)
	}
	ns, err := os.Open(cfg.InboundNetns)
	if err != nil {
		return nil, fmt.Errorf("open netns: %w", err)
	}
	defer ns.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(ns.Fd()), &st); err != nil {
		return nil, fmt.Errorf("stat netns %s: %w", cfg.InboundNetns, err)
	}
	prog := l.objs.InboundLookup
	l.link, l.reused, err = attachPinned(filepath.Join(dir, "link_netns"), prog, netnsKeep(st.Ino), func() (link.Link, error) {
		return link.AttachNetNs(int(ns.Fd()), prog)
	}, &u)
	if err != nil {
		return nil, fmt.Errorf("attach sk_lookup to %s: %w", cfg.InboundNetns, err)
	}
	if err := pinProgram(dir, "lookup", prog); err != nil {
		return nil, err
	}
	u.commit()
	return l, nil
}

func (l *inboundLayer) close() error {
	return errors.Join(l.link.Close(), l.objs.Close())
}

// listeners returns how many SOCKMAP slots hold a socket.
func (l *inboundLayer) listeners() (int, error) {
	n := 0
	for _, slot := range []uint32{inboundSlotV4, inboundSlotV6} {
		var cookie uint64
		err := l.objs.InboundSocks.Lookup(slot, &cookie)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		}
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (l *inboundLayer) status(s *LayerStatus) {
	s.Loaded, s.Reused, s.AttachMode = true, l.reused, "netns-link"
	s.Maps = map[string]int{}
	n, err := count(l.objs.InboundVips)
	if err != nil {
		s.fail(err)
	}
	s.Maps["inbound_vips"] = n
	if n, err = l.listeners(); err != nil {
		s.fail(err)
	}
	s.Maps["inbound_socks"] = n
	c, err := readCounters(l.objs.InboundStats, inboundCounterNames)
	if err != nil {
		s.fail(err)
	}
	s.Counters = c
}

// listenerSlots returns the SOCKMAP slots a listening TCP socket serves:
// an AF_INET socket takes IPv4 connections; an AF_INET6 socket takes IPv6
// ones and, when it is dual-stack (not IPV6_V6ONLY) and bound to the
// wildcard address ::, IPv4 ones too (as the kernel's own lookup would).
func listenerSlots(fd int) ([]uint32, error) {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return nil, err
	}
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return nil, err
	}
	if typ == unix.SOCK_STREAM && proto == unix.IPPROTO_MPTCP {
		return nil, ErrMPTCPListener
	}
	if typ != unix.SOCK_STREAM || proto != unix.IPPROTO_TCP {
		return nil, errors.New("not a TCP socket")
	}
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return nil, err
	}
	switch domain {
	case unix.AF_INET:
		return []uint32{inboundSlotV4}, nil
	case unix.AF_INET6:
		slots := []uint32{inboundSlotV6}
		v6only, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		if err != nil {
			return nil, err
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return nil, err
		}
		if a, ok := sa.(*unix.SockaddrInet6); ok && v6only == 0 && a.Addr == [16]byte{} {
			slots = append(slots, inboundSlotV4)
		}
		return slots, nil
	}
	return nil, fmt.Errorf("address family %d is neither IPv4 nor IPv6", domain)
}

// SetInboundListener makes ln, a listening TCP socket in the network
// namespace of Config.InboundNetns (a *net.TCPListener that is not MPTCP:
// see ListenInbound and ErrMPTCPListener), the target
// of the inbound layer: connections to the inbound prefixes and ports are
// accepted by ln, whatever address it is bound to, and keep the original
// destination as their local address. An AF_INET listener takes IPv4
// connections; an AF_INET6 one takes IPv6 connections and, if it is
// dual-stack and bound to ::, IPv4 connections as well. A later call
// replaces the listener of the families it covers. The kernel drops a
// listener from the map when it is closed; the registration survives a
// restart of the Dataplane (the map is pinned) as long as ln stays open.
func (d *Dataplane) SetInboundListener(ln net.Listener) error {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return fmt.Errorf("inbound listener: %T has no file descriptor", ln)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("inbound listener: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.layerOn(d.inbound); err != nil {
		return err
	}
	m := d.inbound.objs.InboundSocks
	var serr error
	err = raw.Control(func(fd uintptr) {
		var slots []uint32
		if slots, serr = listenerSlots(int(fd)); serr != nil {
			return
		}
		for _, slot := range slots {
			if serr = m.Put(slot, uint64(fd)); serr != nil {
				return
			}
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("inbound listener %s: %w", ln.Addr(), err)
	}
	return nil
}

// ClearInboundListeners unregisters the inbound listeners: matching
// connections take the normal socket lookup again (and are counted as
// no_socket).
func (d *Dataplane) ClearInboundListeners() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.layerOn(d.inbound); err != nil {
		return err
	}
	for _, slot := range []uint32{inboundSlotV4, inboundSlotV6} {
		// An empty SOCKMAP slot answers EINVAL, not ENOENT.
		err := d.inbound.objs.InboundSocks.Delete(slot)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("clear inbound listener %d: %w", slot, err)
		}
	}
	return nil
}

// SetInboundPrefixes replaces the inbound prefixes (Config.InboundPrefixes
// at Start) with prefixes. The port range and network namespace are fixed
// at Start.
func (d *Dataplane) SetInboundPrefixes(prefixes []netip.Prefix) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.layerOn(d.inbound); err != nil {
		return err
	}
	if err := syncPrefixes(d.inbound.objs.InboundVips, prefixes); err != nil {
		return fmt.Errorf("inbound prefixes: %w", err)
	}
	return nil
}

// InboundPrefixes lists the inbound prefixes.
func (d *Dataplane) InboundPrefixes() ([]netip.Prefix, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.layerOn(d.inbound); err != nil {
		return nil, err
	}
	var out []netip.Prefix
	var k bpf.InboundPrefixKey
	var v uint8
	it := d.inbound.objs.InboundVips.Iterate()
	for it.Next(&k, &v) {
		out = append(out, keyPrefix(k))
	}
	return out, it.Err()
}
