package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
)

// DefaultPinDir is where the daemon pins its programs, maps and links.
const DefaultPinDir = "/sys/fs/bpf/peerd"

// TCMode selects how the TC layer attaches.
type TCMode string

const (
	// TCAuto tries TCX (kernel >= 6.6) and falls back to clsact.
	TCAuto TCMode = ""
	// TCX requires TCX links.
	TCX TCMode = "tcx"
	// TCClsact always uses a clsact qdisc and a netlink BPF filter.
	TCClsact TCMode = "clsact"
)

// Config says which layers to load and how to attach them. The zero value
// loads nothing.
type Config struct {
	// CgroupPath is the cgroup v2 directory the capture and fast-path
	// programs attach to. Required when either layer is on. The root of
	// the cgroup v2 hierarchy is refused unless AllowRootCgroup is set:
	// every process on the host would be captured.
	CgroupPath      string
	AllowRootCgroup bool

	// Capture turns on layer 1 (cgroup/connect4+6 rewrite of virtual IPs
	// to the terminator's outbound listener). It needs ListenerPort and at
	// least one of ListenerV4 and ListenerV6.
	Capture bool
	// FastPath turns on layer 2 (sockops + sk_msg on plaintext loopback
	// legs whose local or remote port is ListenerPort or in
	// FastPathPorts; never TLSPorts).
	FastPath      bool
	FastPathPorts []uint16
	// FastPathCgroups are more cgroup v2 directories the fast path's
	// sockops program is attached to, so that sockets of processes
	// outside CgroupPath — peerd's own, typically — pair up with the
	// captured workloads' sockets. Never the root of a hierarchy.
	FastPathCgroups []string
	TLSPorts        []uint16

	// Interfaces names the interfaces (in the caller's network namespace)
	// that get the TC counters (layer 3). Empty: TC is off.
	Interfaces []string
	TCMode     TCMode

	// InboundPrefixes turns on layer 4 (sk_lookup inbound capture): TCP
	// connections arriving in the network namespace InboundNetns whose
	// destination is in one of these prefixes (the gateway's VIPs, IPv4
	// and IPv6) and whose destination port is in InboundPorts are handed
	// to the listener registered with SetInboundListener, whatever address
	// it is bound to. Empty: the layer is off (InboundPorts and
	// InboundNetns are then ignored).
	InboundPrefixes []netip.Prefix
	// InboundPorts is the destination port range {first, last},
	// inclusive; first >= 1 and first <= last ({1, 65535}: every port).
	InboundPorts [2]uint16
	// InboundNetns is the network namespace file the sk_lookup program
	// attaches to, e.g. /proc/self/ns/net or /run/netns/<name>. Required
	// with InboundPrefixes.
	InboundNetns string

	// PinDir is the bpffs directory for pins (DefaultPinDir when empty).
	// A second dataplane Started with the same PinDir re-opens the pinned maps and
	// updates the pinned links in place instead of re-attaching.
	PinDir string

	// The terminator's outbound listener that captured connections are
	// rewritten to.
	ListenerV4   netip.Addr
	ListenerV6   netip.Addr
	ListenerPort uint16

	// UnreachablePrefixes are the virtual IP ranges (the agent's
	// -virtual-ip-cidr and -virtual-ip6-cidr). With Capture on, Start
	// installs an unreachable route for each in the dataplane's network
	// namespace (the namespace of the thread calling Start), so that
	// traffic to a virtual IP that is not captured — a process outside
	// CgroupPath, a pod whose default route leads to the node — fails
	// fast (ENETUNREACH, ICMP unreachable) instead of leaving the node.
	// Close leaves the routes (like the pins); Cleanup removes them. A
	// range that overlaps an address or a (non-default) route of the
	// namespace is refused by Start.
	UnreachablePrefixes []netip.Prefix

	// Mark is the SO_MARK the terminator sets on its own sockets
	// (internal/netutil); marked sockets are never captured. 0: none.
	Mark uint32
	// DaemonCgroupID is the cgroup id of the daemon's own cgroup (see
	// CgroupID); connects from it are never captured. 0: none.
	DaemonCgroupID uint64

	// Logger receives one line per layer decision; nil: slog.Default().
	Logger *slog.Logger

	// probeOverride, set by tests to pretend a kernel feature is missing:
	// a non-nil error it returns for a layer's feature replaces the
	// kernel's answer. nil: the kernel answers.
	probeOverride func(layer, feature string) error
}

func (c *Config) pinDir() string {
	if c.PinDir == "" {
		return DefaultPinDir
	}
	return c.PinDir
}

func (c *Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.Default()
	}
	return c.Logger
}

// validate checks everything that can be checked before touching the
// kernel's BPF state, so bad input never leaves anything attached.
func (c *Config) validate() error {
	if c.Capture || c.FastPath {
		if c.CgroupPath == "" {
			return errors.New("dataplane: CgroupPath is required for the capture and fast-path layers")
		}
		if err := checkCgroup(c.CgroupPath, c.AllowRootCgroup); err != nil {
			return err
		}
	}
	if c.Capture {
		if c.ListenerPort == 0 {
			return errors.New("dataplane: capture needs ListenerPort")
		}
		if !c.ListenerV4.IsValid() && !c.ListenerV6.IsValid() {
			return errors.New("dataplane: capture needs ListenerV4 or ListenerV6")
		}
		if c.ListenerV4.IsValid() && !c.ListenerV4.Unmap().Is4() {
			return fmt.Errorf("dataplane: ListenerV4 %s is not an IPv4 address", c.ListenerV4)
		}
		if c.ListenerV6.IsValid() && (!c.ListenerV6.Is6() || c.ListenerV6.Is4In6()) {
			return fmt.Errorf("dataplane: ListenerV6 %s is not an IPv6 address", c.ListenerV6)
		}
	}
	if err := validateUnreachable(c.UnreachablePrefixes); err != nil {
		return err
	}
	for _, p := range c.FastPathCgroups {
		if err := checkCgroup(p, false); err != nil {
			return fmt.Errorf("fast-path cgroup: %w", err)
		}
	}
	if c.FastPath && c.ListenerPort == 0 && len(c.FastPathPorts) == 0 {
		return errors.New("dataplane: the fast path needs ListenerPort or FastPathPorts")
	}
	for _, p := range c.FastPathPorts {
		for _, tp := range c.TLSPorts {
			if p == tp {
				return fmt.Errorf("dataplane: port %d is both a fast-path and a TLS port", p)
			}
		}
	}
	if c.FastPath && c.ListenerPort != 0 {
		for _, tp := range c.TLSPorts {
			if tp == c.ListenerPort {
				return fmt.Errorf("dataplane: ListenerPort %d is listed as a TLS port", tp)
			}
		}
	}
	switch c.TCMode {
	case TCAuto, TCX, TCClsact:
	default:
		return fmt.Errorf("dataplane: unknown TCMode %q", c.TCMode)
	}
	for _, name := range c.Interfaces {
		if _, err := net.InterfaceByName(name); err != nil {
			return fmt.Errorf("dataplane: interface %q: %w", name, err)
		}
	}
	if len(c.InboundPrefixes) > 0 {
		if err := c.validateInbound(); err != nil {
			return err
		}
	}
	dir := c.pinDir()
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("dataplane: PinDir %q is not absolute", dir)
	}
	return nil
}

func (c *Config) validateInbound() error {
	for _, p := range c.InboundPrefixes {
		if !p.IsValid() {
			return fmt.Errorf("dataplane: invalid inbound prefix %s", p)
		}
	}
	lo, hi := c.InboundPorts[0], c.InboundPorts[1]
	if lo == 0 || lo > hi {
		return fmt.Errorf("dataplane: InboundPorts %d-%d is not a port range (first >= 1, first <= last)", lo, hi)
	}
	if c.InboundNetns == "" {
		return errors.New("dataplane: InboundNetns is required for the inbound layer")
	}
	return checkNetns(c.InboundNetns)
}
