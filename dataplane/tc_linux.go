package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/peerd/peerd/bpf"
)

// The clsact filters peerd installs carry this handle, priority and name
// prefix, so Cleanup can find exactly them.
const (
	tcFilterHandle = 0x50ed
	tcFilterPrio   = 0x50ed
	tcFilterPrefix = "peerd_"
)

type tcLayer struct {
	objs   bpf.TcObjects
	links  []link.Link
	modes  map[string]string
	reused bool
}

func loadTC(cfg *Config, dir string) (_ *tcLayer, err error) {
	spec, err := bpf.LoadTc()
	if err != nil {
		return nil, fmt.Errorf("read TC object: %w", err)
	}
	if err := pinMaps(spec, bpf.TcMapPeerAddrs, bpf.TcMapPeerStats); err != nil {
		return nil, err
	}
	l := &tcLayer{modes: map[string]string{}}
	if _, err := loadPinned(spec, dir, &l.objs); err != nil {
		return nil, fmt.Errorf("load TC programs: %w", err)
	}
	var u undo
	defer func() {
		if err != nil {
			u.rollback()
			_ = l.objs.Close()
		}
	}()
	l.reused = true
	for _, name := range cfg.Interfaces {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("interface %q: %w", name, err)
		}
		modes := map[string]bool{}
		for _, dir1 := range []struct {
			name   string
			prog   *ebpf.Program
			attach ebpf.AttachType
			parent uint32
		}{
			{"ingress", l.objs.TcIngress, ebpf.AttachTCXIngress, netlink.HANDLE_MIN_INGRESS},
			{"egress", l.objs.TcEgress, ebpf.AttachTCXEgress, netlink.HANDLE_MIN_EGRESS},
		} {
			pinPath := filepath.Join(dir, "link_"+name+"_"+dir1.name)
			mode, reused, err := attachTC(cfg.TCMode, ifc.Index, pinPath, dir1.prog, dir1.attach, dir1.parent, &l.links, &u)
			if err != nil {
				return nil, fmt.Errorf("attach TC %s on %s: %w", dir1.name, name, err)
			}
			modes[mode] = true
			l.reused = l.reused && reused
		}
		if len(modes) == 1 {
			for m := range modes {
				l.modes[name] = m
			}
		} else {
			l.modes[name] = "tcx+clsact"
		}
	}
	if err := pinProgram(dir, "ingress", l.objs.TcIngress); err != nil {
		return nil, err
	}
	if err := pinProgram(dir, "egress", l.objs.TcEgress); err != nil {
		return nil, err
	}
	u.commit()
	return l, nil
}

// attachTC attaches prog to one direction of ifindex: TCX when mode allows
// it and the kernel has it, clsact otherwise. A pinned TCX link is updated
// in place; a clsact filter is replaced in place (same handle/priority).
func attachTC(mode TCMode, ifindex int, pinPath string, prog *ebpf.Program, attach ebpf.AttachType, parent uint32, links *[]link.Link, u *undo) (string, bool, error) {
	if mode != TCClsact {
		keep := func(info *link.Info) bool {
			x := info.TCX()
			return x != nil && int(x.Ifindex) == ifindex && ebpf.AttachType(x.AttachType) == attach
		}
		l, reused, err := attachPinned(pinPath, prog, keep, func() (link.Link, error) {
			return link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: attach})
		}, u)
		if err == nil {
			*links = append(*links, l)
			// A previous run in clsact mode may have left a filter.
			_ = delClsactFilter(ifindex, parent)
			return "tcx", reused, nil
		}
		if mode == TCX || !errors.Is(err, ebpf.ErrNotSupported) {
			return "", false, err
		}
	} else {
		// Switching from TCX: drop a pinned TCX link of ours.
		if _, err := updatePinned(pinPath, prog, func(*link.Info) bool { return false }, u); err != nil {
			return "", false, err
		}
	}
	reused, err := attachClsact(ifindex, prog, parent, u)
	return "clsact", reused, err
}

func ensureClsact(ifindex int) error {
	qds, err := netlink.QdiscList(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: ifindex}})
	if err != nil {
		return fmt.Errorf("list qdiscs: %w", err)
	}
	for _, q := range qds {
		if q.Type() == "clsact" {
			return nil
		}
	}
	q := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := netlink.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact qdisc: %w", err)
	}
	return nil
}

func findClsactFilter(ifindex int, parent uint32) (*netlink.BpfFilter, error) {
	fs, err := netlink.FilterList(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: ifindex}}, parent)
	if err != nil {
		return nil, err
	}
	for _, f := range fs {
		if bf, ok := f.(*netlink.BpfFilter); ok && bf.Handle == tcFilterHandle && bf.Priority == tcFilterPrio && strings.HasPrefix(bf.Name, tcFilterPrefix) {
			return bf, nil
		}
	}
	return nil, nil
}

func attachClsact(ifindex int, prog *ebpf.Program, parent uint32, u *undo) (bool, error) {
	if err := ensureClsact(ifindex); err != nil {
		return false, err
	}
	old, err := findClsactFilter(ifindex, parent)
	if err != nil {
		return false, fmt.Errorf("list filters: %w", err)
	}
	info, err := prog.Info()
	if err != nil {
		return false, err
	}
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    parent,
			Handle:    tcFilterHandle,
			Priority:  tcFilterPrio,
			Protocol:  unix.ETH_P_ALL,
		},
		Fd:           prog.FD(),
		Name:         tcFilterPrefix + info.Name,
		DirectAction: true,
	}
	if err := netlink.FilterReplace(f); err != nil {
		return false, fmt.Errorf("replace filter: %w", err)
	}
	if old == nil {
		u.add(func() { _ = netlink.FilterDel(f) })
	} else if oldProg, err := ebpf.NewProgramFromID(ebpf.ProgramID(old.Id)); err == nil {
		u.add(func() {
			f.Fd = oldProg.FD()
			_ = netlink.FilterReplace(f)
			_ = oldProg.Close()
		})
		u.onCommit(func() { _ = oldProg.Close() })
	}
	return old != nil, nil
}

func delClsactFilter(ifindex int, parent uint32) error {
	f, err := findClsactFilter(ifindex, parent)
	if err != nil || f == nil {
		return err
	}
	return netlink.FilterDel(f)
}

// deleteClsactFilters removes, from every interface of the caller's
// network namespace, the clsact filters of peerd that run one of progIDs
// (the TC programs pinned in the directory being cleaned up, so another
// instance's filters are left alone).
func deleteClsactFilters(progIDs map[uint32]bool) error {
	if len(progIDs) == 0 {
		return nil
	}
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list interfaces: %w", err)
	}
	var errs []error
	for _, l := range links {
		for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
			f, err := findClsactFilter(l.Attrs().Index, parent)
			if err == nil && f != nil && progIDs[uint32(f.Id)] {
				err = netlink.FilterDel(f)
			}
			if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
				errs = append(errs, fmt.Errorf("%s: %w", l.Attrs().Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (l *tcLayer) close() error {
	var errs []error
	for _, lk := range l.links {
		errs = append(errs, lk.Close())
	}
	errs = append(errs, l.objs.Close())
	return errors.Join(errs...)
}

func (l *tcLayer) status(s *LayerStatus) {
	s.Loaded, s.Reused = true, l.reused
	s.Interfaces = map[string]string{}
	modes := map[string]bool{}
	for k, v := range l.modes {
		s.Interfaces[k] = v
		modes[v] = true
	}
	for m := range modes {
		if s.AttachMode == "" {
			s.AttachMode = m
		} else if s.AttachMode != m {
			s.AttachMode = "tcx+clsact"
		}
	}
	s.Maps = map[string]int{}
	for name, m := range map[string]*ebpf.Map{"peer_addrs": l.objs.PeerAddrs, "peer_stats": l.objs.PeerStats} {
		n, err := count(m)
		if err != nil {
			s.fail(err)
		}
		s.Maps[name] = n
	}
}

// SetPeerAddr counts traffic to and from addr as peerID's.
func (d *Dataplane) SetPeerAddr(addr netip.Addr, peerID uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.layerOn(d.tc); err != nil {
		return err
	}
	k := bpf.TcPeerAddr{Addr: words(addr)}
	if err := d.tc.objs.PeerAddrs.Put(&k, peerID); err != nil {
		return fmt.Errorf("set peer address %s: %w", addr, err)
	}
	return nil
}

// PeerCounters returns the TC counters per peer id, summed over CPUs.
func (d *Dataplane) PeerCounters() (map[uint32]PeerCounters, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.layerOn(d.tc); err != nil {
		return nil, err
	}
	return d.tc.counters()
}
