package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/peerd/peerd/dataplane"
)

// startDataplane loads the eBPF layers the configuration asks for and opens
// the terminator's transparent listeners. It returns no dataplane (and no
// error) when nothing is asked for.
func (a *Agent) startDataplane(ctx context.Context) error {
	cfg := &a.cfg
	if cfg.CgroupPath == "" && len(cfg.DataplaneInterfaces) == 0 && len(cfg.GatewayVIPs) == 0 {
		return nil
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
		var fpCgroups []string
		dc.DaemonCgroupID, fpCgroups = daemonCgroup(cfg.CgroupPath)
		if dc.FastPath {
			dc.FastPathCgroups = fpCgroups
		}
		for _, addr := range []string{"127.0.0.1", "::1"} {
			ln, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(cfg.TransparentPort)))
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
