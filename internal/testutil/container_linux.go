package testutil

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// ContainerOptions says how StartContainer sets a container up.
type ContainerOptions struct {
	// Cgroup is the cgroup v2 directory the process starts in (from its
	// first instruction, as a container runtime places it). Required.
	Cgroup string
	// Addr is the container side of its veth, e.g. 10.77.0.2/24; the
	// host side gets Gateway in the same prefix, and the container's
	// default route points at it. Invalid: no veth, loopback only.
	Addr    netip.Prefix
	Gateway netip.Addr
	// Addr6 and Gateway6 do the same for IPv6 (optional).
	Addr6    netip.Prefix
	Gateway6 netip.Addr
}

// Container is a process started the way a container runtime starts one:
// in a child cgroup, in a network namespace of its own (cloned with the
// process) whose loopback is up, joined to the caller's namespace by a veth
// pair when asked. It is killed, and its veth removed, when tb ends.
type Container struct {
	Cmd *exec.Cmd
	// HostVeth is the host side of the veth pair ("" without one).
	HostVeth string
}

// NetnsPath is the container's network namespace file.
func (c *Container) NetnsPath() string {
	return fmt.Sprintf("/proc/%d/ns/net", c.Cmd.Process.Pid)
}

// StartContainer starts cmd as a container. cmd's stdio is the caller's to
// set before; the process runs from the start in its own namespace and
// cgroup, and its network (loopback, veth, routes) is configured from
// outside right after it starts, so a process that needs it must wait for
// a signal from the test (e.g. a line on its stdin). Needs root.
func StartContainer(tb testing.TB, cmd *exec.Cmd, opts ContainerOptions) *Container {
	tb.Helper()
	cg, err := os.Open(opts.Cgroup)
	if err != nil {
		tb.Fatalf("container cgroup: %v", err)
	}
	defer cg.Close()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWNET,
		UseCgroupFD: true,
		CgroupFD:    int(cg.Fd()),
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start container: %v", err)
	}
	c := &Container{Cmd: cmd}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if c.HostVeth != "" {
			if l, err := netlink.LinkByName(c.HostVeth); err == nil {
				_ = netlink.LinkDel(l)
			}
		}
	})
	if err := c.network(opts); err != nil {
		tb.Fatalf("container network: %v", err)
	}
	return c
}

func (c *Container) network(opts ContainerOptions) error {
	ns, err := netns.GetFromPid(c.Cmd.Process.Pid)
	if err != nil {
		return fmt.Errorf("namespace of pid %d: %w", c.Cmd.Process.Pid, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in the container: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("container loopback: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("container loopback up: %w", err)
	}
	if !opts.Addr.IsValid() && !opts.Addr6.IsValid() {
		return nil
	}
	name := fmt.Sprintf("pdc%d", c.Cmd.Process.Pid%1000000)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "c"}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s: %w", name, err)
	}
	c.HostVeth = name
	peer, err := netlink.LinkByName(name + "c")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetNsPid(peer, c.Cmd.Process.Pid); err != nil {
		return fmt.Errorf("move %s into the container: %w", peer.Attrs().Name, err)
	}
	host, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	inner, err := h.LinkByName(name + "c")
	if err != nil {
		return err
	}
	for _, a := range []struct {
		addr netip.Prefix
		gw   netip.Addr
	}{{opts.Addr, opts.Gateway}, {opts.Addr6, opts.Gateway6}} {
		if !a.addr.IsValid() {
			continue
		}
		bits := a.addr.Bits()
		if err := netlink.AddrAdd(host, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a.gw, bits)), Flags: nodad(a.gw)}); err != nil {
			return fmt.Errorf("host side %s: %w", a.gw, err)
		}
		if err := h.AddrAdd(inner, &netlink.Addr{IPNet: ipNet(a.addr), Flags: nodad(a.addr.Addr())}); err != nil {
			return fmt.Errorf("container side %s: %w", a.addr, err)
		}
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return err
	}
	if err := h.LinkSetUp(inner); err != nil {
		return err
	}
	for _, gw := range []netip.Addr{opts.Gateway, opts.Gateway6} {
		if !gw.IsValid() {
			continue
		}
		r := &netlink.Route{LinkIndex: inner.Attrs().Index, Gw: gw.AsSlice()}
		// An IPv6 default route needs the gateway's address to have
		// left tentative state; nodad above avoids the wait, but the
		// kernel can still refuse for a moment after the link comes up.
		var err error
		for i := 0; i < 50; i++ {
			if err = h.RouteAdd(r); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("container default route via %s: %w", gw, err)
		}
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func nodad(a netip.Addr) int {
	if a.Is6() {
		return syscall.IFA_F_NODAD
	}
	return 0
}
