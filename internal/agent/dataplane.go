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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/peerd/peerd/catalog"
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
	dp, err := dataplane.Load(ctx, dc)
	if err != nil {
		return fmt.Errorf("eBPF dataplane: %w", err)
	}
	a.dataplane = dp
	if len(dc.InboundPrefixes) > 0 {
		if err := dp.SetInboundListener(a.gatewayLn); err != nil && !errors.Is(err, dataplane.ErrLayerOff) {
			_ = dp.Cleanup()
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

// dataplaneSync keeps the eBPF maps equal to the catalog: the capture
// layer's virtual IPs (every port of a VIP is captured) and the TC layer's
// peer addresses (the gateways and servers of each peer), and names the
// peers of the per-peer counters.
type dataplaneSync struct {
	a       *Agent
	peerIDs map[string]uint32
	svcIDs  map[[2]string]uint32
	vips    map[netip.Addr]bool
	addrs   map[netip.Addr]uint32
	// fastPorts are the instance ports last given to the fast path.
	fastPorts []uint16
	// errors counts failed syncs (e.g. a full map), by kind.
	errors   *prometheus.CounterVec
	mu       sync.Mutex
	peerName map[uint32]string
}

func newDataplaneSync(a *Agent) *dataplaneSync {
	return &dataplaneSync{a: a, peerIDs: map[string]uint32{}, svcIDs: map[[2]string]uint32{},
		vips: map[netip.Addr]bool{}, addrs: map[netip.Addr]uint32{}, peerName: map[uint32]string{},
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_dataplane_sync_errors_total",
			Help: "Failed updates of the eBPF maps from the catalog (a full map, for one), by maps: virtual_ips, peer_addresses, fastpath_ports.",
		}, []string{"maps"})}
}

// run syncs until ctx ends.
func (s *dataplaneSync) run(ctx context.Context) {
	a := s.a
	for {
		ws := memdb.NewWatchSet()
		st := a.cluster.View()
		for _, step := range []struct {
			kind string
			sync func(memdb.WatchSet, *catalog.Store) error
		}{{"virtual_ips", s.syncVIPs}, {"peer_addresses", s.syncPeerAddrs}, {"fastpath_ports", s.syncFastPathPorts}} {
			if err := step.sync(ws, st); err != nil {
				// A full map lands here: logged, counted, retried on the
				// next change or after 5 s.
				s.errors.WithLabelValues(step.kind).Inc()
				a.log.Warn("sync the catalog to the dataplane's maps", "maps", step.kind, "err", err)
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

func (s *dataplaneSync) peerID(peer string) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.peerIDs[peer]
	if !ok {
		id = uint32(len(s.peerIDs) + 1)
		s.peerIDs[peer] = id
		s.peerName[id] = peer
	}
	return id
}

func (s *dataplaneSync) syncVIPs(ws memdb.WatchSet, st *catalog.Store) error {
	_, vips, err := st.VirtualIPs(ws)
	if err != nil {
		return err
	}
	want := map[netip.Addr]*catalog.VirtualIP{}
	for _, v := range vips {
		for _, a := range []string{v.IPv4, v.IPv6} {
			if ip, err := netip.ParseAddr(a); err == nil {
				want[ip] = v
			}
		}
	}
	dp := s.a.dataplane
	for ip, v := range want {
		if s.vips[ip] {
			continue
		}
		k := [2]string{v.Peer, v.Service}
		if _, ok := s.svcIDs[k]; !ok {
			s.svcIDs[k] = uint32(len(s.svcIDs) + 1)
		}
		if err := dp.SetVIP(ip, 0, s.peerID(v.Peer), s.svcIDs[k]); err != nil {
			if errors.Is(err, dataplane.ErrLayerOff) {
				return nil
			}
			return fmt.Errorf("install %s (%s from %s): %w", ip, v.Service, v.Peer, err)
		}
		s.vips[ip] = true
	}
	for ip := range s.vips {
		if want[ip] == nil {
			if err := dp.DeleteVIP(ip, 0); err != nil {
				return fmt.Errorf("remove %s: %w", ip, err)
			}
			delete(s.vips, ip)
		}
	}
	return nil
}

// syncFastPathPorts puts the ports of this node's instances into the fast
// path, so the terminator ↔ instance loopback leg is accelerated too.
func (s *dataplaneSync) syncFastPathPorts(ws memdb.WatchSet, st *catalog.Store) error {
	if !s.a.cfg.FastPath || s.a.cfg.CgroupPath == "" {
		return nil
	}
	_, svcs, err := st.NodeServices(ws, "", s.a.cfg.NodeName)
	if err != nil {
		return err
	}
	var ports []uint16
	for _, svc := range svcs {
		if svc.Kind == "" && svc.Port > 0 && svc.Port < 65536 && !slices.Contains(ports, uint16(svc.Port)) {
			ports = append(ports, uint16(svc.Port))
		}
	}
	slices.Sort(ports)
	if slices.Equal(ports, s.fastPorts) {
		return nil
	}
	if err := s.a.dataplane.SetFastPathPorts(ports); err != nil {
		if errors.Is(err, dataplane.ErrLayerOff) {
			return nil
		}
		return err
	}
	s.fastPorts = ports
	return nil
}

// syncPeerAddrs maps each peer's gateway and server addresses to its id
// for the TC counters.
func (s *dataplaneSync) syncPeerAddrs(ws memdb.WatchSet, st *catalog.Store) error {
	if len(s.a.cfg.DataplaneInterfaces) == 0 {
		return nil
	}
	_, peerings, err := st.Peerings(ws)
	if err != nil {
		return err
	}
	want := map[netip.Addr]uint32{}
	for _, p := range peerings {
		id := s.peerID(p.Name)
		for _, hp := range p.PeerServerAddresses {
			if host, _, err := net.SplitHostPort(hp); err == nil {
				if ip, err := netip.ParseAddr(host); err == nil {
					want[ip.Unmap()] = id
				}
			}
		}
		_, svcs, err := st.Services(ws, p.Name)
		if err != nil {
			return err
		}
		for name := range svcs {
			_, nodes, err := st.ServiceNodes(ws, p.Name, name)
			if err != nil {
				return err
			}
			for _, sn := range nodes {
				if ip, err := netip.ParseAddr(sn.Service.TaggedAddresses[catalog.TaggedAddressGateway].Address); err == nil {
					want[ip.Unmap()] = id
				}
			}
		}
	}
	dp := s.a.dataplane
	for ip, id := range want {
		if s.addrs[ip] == id {
			continue
		}
		if err := dp.SetPeerAddr(ip, id); err != nil {
			if errors.Is(err, dataplane.ErrLayerOff) {
				return nil
			}
			return fmt.Errorf("map %s to a peer: %w", ip, err)
		}
		s.addrs[ip] = id
	}
	for ip := range s.addrs {
		if _, ok := want[ip]; !ok {
			if err := dp.DeletePeerAddr(ip); err != nil {
				return fmt.Errorf("unmap %s: %w", ip, err)
			}
			delete(s.addrs, ip)
		}
	}
	return nil
}

// peerCounters is a collector of the TC layer's per-peer counters.
type peerCounters struct{ a *Agent }

var descPeerBytes = prometheus.NewDesc("peerd_dataplane_peer_bytes_total",
	"Bytes exchanged with each peer's gateways and servers on the TC-attached interfaces, by direction (rx, tx).",
	[]string{"peer", "direction"}, nil)
var descPeerPackets = prometheus.NewDesc("peerd_dataplane_peer_packets_total",
	"Packets exchanged with each peer's gateways and servers on the TC-attached interfaces, by direction (rx, tx).",
	[]string{"peer", "direction"}, nil)

func (c peerCounters) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPeerBytes
	ch <- descPeerPackets
}

func (c peerCounters) Collect(ch chan<- prometheus.Metric) {
	s := c.a.dpSync
	if s == nil || c.a.dataplane == nil {
		return
	}
	counts, err := c.a.dataplane.PeerCounters()
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, pc := range counts {
		name := s.peerName[id]
		if name == "" {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descPeerBytes, prometheus.CounterValue, float64(pc.RxBytes), name, "rx")
		ch <- prometheus.MustNewConstMetric(descPeerBytes, prometheus.CounterValue, float64(pc.TxBytes), name, "tx")
		ch <- prometheus.MustNewConstMetric(descPeerPackets, prometheus.CounterValue, float64(pc.RxPackets), name, "rx")
		ch <- prometheus.MustNewConstMetric(descPeerPackets, prometheus.CounterValue, float64(pc.TxPackets), name, "tx")
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
