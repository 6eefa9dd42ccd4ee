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
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/dataplane"
)

// startDataplane loads the eBPF layers the configuration asks for and opens
// the terminator's transparent listeners. It returns no dataplane (and no
// error) when nothing is asked for.
func (a *Agent) startDataplane(ctx context.Context) error {
	cfg := &a.cfg
	if cfg.CgroupPath == "" && len(cfg.DataplaneInterfaces) == 0 {
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
		dc.DaemonCgroupID = ownCgroupID(cfg.CgroupPath)
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
	dp, err := dataplane.Load(ctx, dc)
	if err != nil {
		return fmt.Errorf("eBPF dataplane: %w", err)
	}
	a.dataplane = dp
	return nil
}

// ownCgroupID is the id of the cgroup this process runs in, so the capture
// programs never redirect the daemon's own connections; 0 (no exemption)
// when the daemon runs inside the captured cgroup itself, where exempting
// it would exempt every workload there too.
func ownCgroupID(captured string) uint64 {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rel, ok := strings.CutPrefix(sc.Text(), "0::")
		if !ok {
			continue
		}
		for _, root := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
			id, err := dataplane.CgroupID(filepath.Join(root, rel))
			if err != nil {
				continue
			}
			if cid, err := dataplane.CgroupID(captured); err == nil && cid == id {
				return 0
			}
			return id
		}
	}
	return 0
}

// syncVirtualIPs keeps the capture layer's VIP map equal to the virtual
// IPs in the catalog: every port of a VIP is captured.
func (a *Agent) syncVirtualIPs(ctx context.Context) {
	type key struct{ peer, service string }
	ids := map[key]uint32{}
	peers := map[string]uint32{}
	installed := map[netip.Addr]bool{}
	for {
		ws := memdb.NewWatchSet()
		_, vips, err := a.cluster.View().VirtualIPs(ws)
		if err != nil {
			a.log.Warn("read virtual IPs for the dataplane", "err", err)
		} else {
			want := map[netip.Addr]*catalog.VirtualIP{}
			for _, v := range vips {
				for _, s := range []string{v.IPv4, v.IPv6} {
					if ip, err := netip.ParseAddr(s); err == nil {
						want[ip] = v
					}
				}
			}
			for ip, v := range want {
				if installed[ip] {
					continue
				}
				if _, ok := peers[v.Peer]; !ok {
					peers[v.Peer] = uint32(len(peers) + 1)
				}
				k := key{v.Peer, v.Service}
				if _, ok := ids[k]; !ok {
					ids[k] = uint32(len(ids) + 1)
				}
				if err := a.dataplane.SetVIP(ip, 0, peers[v.Peer], ids[k]); err != nil {
					if !errors.Is(err, dataplane.ErrLayerOff) {
						a.log.Warn("install a virtual IP in the capture map", "vip", ip.String(), "service", v.Service, "peer", v.Peer, "err", err)
					}
					continue
				}
				installed[ip] = true
			}
			for ip := range installed {
				if want[ip] == nil {
					if err := a.dataplane.DeleteVIP(ip, 0); err != nil {
						a.log.Warn("remove a virtual IP from the capture map", "vip", ip.String(), "err", err)
					}
					delete(installed, ip)
				}
			}
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = ws.WatchCtx(wctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
	}
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
