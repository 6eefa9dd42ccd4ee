package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/peerd/peerd/bpf"
)

var fastPathCounterNames = []string{"inserts", "insert_errors", "skip_tls", "msgs", "redirects", "misses", "bytes"}

type fastLayer struct {
	objs   bpf.FastpathObjects
	links  []link.Link
	reused bool
	netns  bool // SOCKHASH keys carry the netns cookie (fastPathNetnsNeeds met)
}

// syncPorts makes m hold exactly ports.
func syncPorts(m *ebpf.Map, ports []uint16) error {
	var stale []uint16
	var k uint16
	var v uint8
	it := m.Iterate()
	for it.Next(&k, &v) {
		if !slices.Contains(ports, k) {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, p := range stale {
		if err := m.Delete(p); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	for _, p := range ports {
		if err := m.Put(p, uint8(1)); err != nil {
			return fmt.Errorf("port %d: %w", p, err)
		}
	}
	return nil
}

func loadFastPath(cfg *Config, dir string, log *slog.Logger) (_ *fastLayer, err error) {
	spec, err := bpf.LoadFastpath()
	if err != nil {
		return nil, fmt.Errorf("read fast-path object: %w", err)
	}
	nerr := probe(LayerFastPath, fastPathNetnsNeeds, cfg.probeOverride)
	if nerr != nil {
		log.Warn("fast path without network namespace cookies: identical loopback tuples of two namespaces cannot both be spliced", "reason", nerr.Error())
	}
	if err := spec.Variables["netns_aware"].Set(boolByte(nerr == nil)); err != nil {
		return nil, fmt.Errorf("set netns_aware: %w", err)
	}
	if err := pinMaps(spec, bpf.FastpathMapSockPairs, bpf.FastpathMapFpPorts, bpf.FastpathMapTlsPorts, bpf.FastpathMapFpStats); err != nil {
		return nil, err
	}
	l := &fastLayer{netns: nerr == nil}
	if _, err := loadPinned(spec, dir, &l.objs); err != nil {
		return nil, fmt.Errorf("load fast-path programs: %w", err)
	}
	var u undo
	defer func() {
		if err != nil {
			u.rollback()
			_ = l.objs.Close()
		}
	}()
	ports := slices.Clone(cfg.FastPathPorts)
	if cfg.ListenerPort != 0 && !slices.Contains(ports, cfg.ListenerPort) {
		ports = append(ports, cfg.ListenerPort)
	}
	// TLS ports first: from here on no TLS socket can enter the map.
	if err := syncPorts(l.objs.TlsPorts, cfg.TLSPorts); err != nil {
		return nil, fmt.Errorf("TLS ports: %w", err)
	}
	if err := syncPorts(l.objs.FpPorts, ports); err != nil {
		return nil, fmt.Errorf("fast-path ports: %w", err)
	}
	// sk_msg on the sockhash before sockops can fill it. Attaching again
	// to a re-opened map replaces the previous program; sockets already
	// in the map keep the one they were inserted with.
	msgOpts := link.RawAttachProgramOptions{Target: l.objs.SockPairs.FD(), Program: l.objs.FastpathSkmsg, Attach: ebpf.AttachSkMsgVerdict}
	if err := link.RawAttachProgram(msgOpts); err != nil {
		return nil, fmt.Errorf("attach sk_msg to sock_pairs: %w", err)
	}
	u.add(func() {
		_ = link.RawDetachProgram(link.RawDetachProgramOptions{Target: msgOpts.Target, Program: msgOpts.Program, Attach: msgOpts.Attach})
	})
	if err := pinProgram(dir, "skmsg", l.objs.FastpathSkmsg); err != nil {
		return nil, err
	}
	l.links, l.reused, err = attachCgroupProgs(cfg, dir, []cgroupProg{
		{"sockops", l.objs.FastpathSockops, ebpf.AttachCGroupSockOps},
	}, &u)
	if err != nil {
		return nil, err
	}
	for i, path := range cfg.FastPathCgroups {
		extra, reused, err := attachCgroupProgsTo(path, dir, fmt.Sprintf("_extra%d", i), []cgroupProg{
			{"sockops", l.objs.FastpathSockops, ebpf.AttachCGroupSockOps},
		}, &u)
		if err != nil {
			return nil, err
		}
		l.links = append(l.links, extra...)
		l.reused = l.reused && reused
	}
	u.commit()
	return l, nil
}

func (l *fastLayer) close() error {
	var errs []error
	for _, lk := range l.links {
		errs = append(errs, lk.Close())
	}
	errs = append(errs, l.objs.Close())
	return errors.Join(errs...)
}

func (l *fastLayer) status(s *LayerStatus) {
	s.Loaded, s.Reused, s.AttachMode = true, l.reused, "cgroup-link"
	s.WorkloadNetns = l.netns
	n, err := count(l.objs.SockPairs)
	if err != nil {
		s.fail(err)
	}
	s.Maps = map[string]int{"sock_pairs": n}
	c, err := readCounters(l.objs.FpStats, fastPathCounterNames)
	if err != nil {
		s.fail(err)
	}
	s.Counters = c
}

// SetFastPathPorts replaces the ports whose plaintext loopback legs enter
// the fast path (the transparent listener's port always stays): the agent
// adds the ports of this node's instances so the terminator ↔ instance leg
// is accelerated too. TLS ports are never inserted, whatever this says.
func (d *Dataplane) SetFastPathPorts(ports []uint16) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.layerOn(d.fast); err != nil {
		return err
	}
	return d.syncFastPathPorts(ports)
}

// syncFastPathPorts is SetFastPathPorts with d.mu held and the layer on.
func (d *Dataplane) syncFastPathPorts(ports []uint16) error {
	ports = slices.Clone(ports)
	if d.cfg.ListenerPort != 0 && !slices.Contains(ports, d.cfg.ListenerPort) {
		ports = append(ports, d.cfg.ListenerPort)
	}
	if err := syncPorts(d.fast.objs.FpPorts, ports); err != nil {
		return fmt.Errorf("fast-path ports: %w", err)
	}
	return nil
}
