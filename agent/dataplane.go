package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/peerd/peerd/internal/sockets"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/dataplane"
	"github.com/peerd/peerd/internal/cgroupfs"
)

// startDataplane loads the eBPF layers the configuration asks for and opens
// the terminator's transparent listeners. It returns no dataplane (and no
// error) when nothing is asked for.
func (a *Agent) startDataplane(ctx context.Context) error {
	cfg := &a.cfg
	if cfg.CgroupPath == "" && len(cfg.DataplaneInterfaces) == 0 && len(cfg.GatewayVIPs) == 0 {
		return nil
	}
	if cfg.CgroupPath != "" {
		if err := checkCgroupPath(cfg.CgroupPath, cfg.AllowRootCgroup); err != nil {
			return err
		}
	}
	dc := dataplane.Config{
		CgroupPath: cfg.CgroupPath, AllowRootCgroup: cfg.AllowRootCgroup,
		Capture: cfg.CgroupPath != "", FastPath: cfg.CgroupPath != "" && cfg.FastPath,
		Interfaces: cfg.DataplaneInterfaces, PinDir: cfg.BPFPinDir,
		Mark: uint32(cfg.ProxyMark), Logger: a.log,
	}
	if dc.Capture {
		dc.ListenerV4, dc.ListenerV6 = netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")
		dc.ListenerPort = uint16(cfg.TransparentPort)
		dc.FastPathPorts = []uint16{dc.ListenerPort}
		for _, ln := range []net.Listener{a.gatewayLn, a.grpcTLSLn} {
			if ln != nil {
				dc.TLSPorts = append(dc.TLSPorts, uint16(ln.Addr().(*net.TCPAddr).Port))
			}
		}
		// Virtual IPs that are not captured fail on the node instead of
		// leaving it (the ranges were validated with the configuration).
		for _, r := range []struct {
			cidr   string
			family int
		}{{cfg.VirtualIPv4Range(), 4}, {cfg.VirtualIPv6CIDR, 6}} {
			if r.cidr == "" {
				continue
			}
			p, err := state.ParseVirtualIPRange(r.cidr, r.family)
			if err != nil {
				return fmt.Errorf("eBPF dataplane: virtual IP range: %w", err)
			}
			dc.UnreachablePrefixes = append(dc.UnreachablePrefixes, p)
		}
		var fpCgroups []string
		dc.DaemonCgroupID, fpCgroups = daemonCgroup(cfg.CgroupPath)
		if dc.FastPath {
			dc.FastPathCgroups = fpCgroups
		}
		for _, addr := range []string{"127.0.0.1", "::1"} {
			ln, err := sockets.Or(cfg.Sockets).Listen(ctx, nil, "transparent", "tcp", net.JoinHostPort(addr, strconv.Itoa(cfg.TransparentPort)))
			if err != nil {
				if addr == "::1" {
					a.log.Warn("no IPv6 transparent listener; IPv6 virtual IPs will not be captured", "err", err)
					continue
				}
				return fmt.Errorf("listen for captured connections on %s:%d: %w (set -transparent-port)", addr, cfg.TransparentPort, err)
			}
			a.transparentLns = append(a.transparentLns, ln)
		}
	}
	if len(cfg.GatewayVIPs) > 0 && a.gatewayLn != nil {
		for _, p := range cfg.GatewayVIPs {
			dc.InboundPrefixes = append(dc.InboundPrefixes, netip.MustParsePrefix(p).Masked())
		}
		port := uint16(a.gatewayLn.Addr().(*net.TCPAddr).Port)
		dc.InboundPorts, dc.InboundNetns = [2]uint16{port, port}, "/proc/self/ns/net"
	}
	dp, err := dataplane.New(dc)
	if err != nil {
		return fmt.Errorf("eBPF dataplane: %w", err)
	}
	if err := dp.Start(); err != nil {
		return fmt.Errorf("eBPF dataplane: %w", err)
	}
	a.dataplane = dp
	if len(dc.InboundPrefixes) > 0 {
		if err := dp.SetInboundListener(a.gatewayLn); err != nil && !errors.Is(err, dataplane.ErrLayerOff) {
			_ = dp.Cleanup(ctx)
			a.dataplane = nil
			return fmt.Errorf("eBPF dataplane: hand the gateway listener to the inbound layer: %w", err)
		}
	}
	return nil
}

// checkCgroupPath refuses a -cgroup-path that is no cgroup v2 directory,
// or the root of the hierarchy without -allow-root-cgroup, with what to
// set instead. The dataplane checks again before it attaches anything.
func checkCgroupPath(path string, allowRoot bool) error {
	d, err := cgroupfs.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		hint := "create it, or name the cgroup the workloads run in"
		base := filepath.Base(filepath.Clean(path))
		for _, alt := range []struct{ from, to, driver string }{
			{"kubepods", "kubepods.slice", "systemd"},
			{"kubepods.slice", "kubepods", "cgroupfs"},
		} {
			if base != alt.from {
				continue
			}
			other := filepath.Join(filepath.Dir(filepath.Clean(path)), alt.to)
			if _, err := cgroupfs.Stat(other); err == nil {
				hint = fmt.Sprintf("this node's kubelet uses the %s cgroup driver: set -cgroup-path %s", alt.driver, other)
			} else {
				hint = "the kubelet's pods are under kubepods.slice with the systemd cgroup driver and under kubepods with cgroupfs " +
					"(on a hybrid host below /sys/fs/cgroup/unified); name the one this node has"
			}
		}
		return fmt.Errorf("-cgroup-path %s does not exist: %s", path, hint)
	case err != nil:
		return fmt.Errorf("-cgroup-path %s: %w: name a directory of the cgroup v2 hierarchy (mounted at /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host)", path, err)
	case d.Root && !allowRoot:
		return fmt.Errorf("-cgroup-path %s is the root of the cgroup hierarchy, where every process of the host runs: "+
			"name the cgroup of the workloads (e.g. /sys/fs/cgroup/kubepods.slice, or a slice of their own), or set -allow-root-cgroup", path)
	}
	return nil
}

// ownCgroup is the cgroup v2 directory this process runs in and its id;
// "" when it cannot be found.
func ownCgroup() (string, uint64) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rel, ok := strings.CutPrefix(sc.Text(), "0::")
		if !ok {
			continue
		}
		for _, root := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
			path := filepath.Join(root, rel)
			if id, err := dataplane.CgroupID(path); err == nil {
				return path, id
			}
		}
	}
	return "", 0
}

// daemonCgroup decides how the dataplane treats the daemon's own cgroup:
// its id is exempted from capture, and the fast path also attaches there
// so the terminator's loopback sockets pair up with the workloads'.
// Neither applies when the daemon runs in the captured cgroup itself
// (exempting it would exempt every workload) or in the root of the
// hierarchy (never attached to).
func daemonCgroup(captured string) (exemptID uint64, fastPathCgroups []string) {
	path, id := ownCgroup()
	if path == "" {
		return 0, nil
	}
	if cid, err := dataplane.CgroupID(captured); err == nil && cid == id {
		return 0, nil
	}
	if rel := strings.TrimPrefix(strings.TrimPrefix(path, "/sys/fs/cgroup/unified"), "/sys/fs/cgroup"); rel != "" && rel != "/" {
		fastPathCgroups = []string{path}
	}
	return id, fastPathCgroups
}

// CleanupDataplane detaches and removes every eBPF program, map and link
// pinned under pinDir ("" = /sys/fs/bpf/peerd): `peerd dataplane cleanup`.
func CleanupDataplane(pinDir string) error {
	if pinDir == "" {
		pinDir = dataplane.DefaultPinDir
	}
	if err := dataplane.Cleanup(pinDir); err != nil {
		return fmt.Errorf("clean up the dataplane pinned under %s: %w", pinDir, err)
	}
	return nil
}
