package agent

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/dataplane"
)

// dataplaneSync keeps the eBPF maps equal to the catalog: on every change
// of the view (and at least every 5 s) it computes the desired state
// (desiredDataplane) and hands it to the dataplane, which reconciles its
// pinned maps against it (dataplane.Sync).
type dataplaneSync struct {
	a     *Agent
	wants dataplaneWants
	// errors counts failed syncs (e.g. a full map), by map.
	errors *prometheus.CounterVec
}

func newDataplaneSync(a *Agent) *dataplaneSync {
	return &dataplaneSync{a: a,
		wants: dataplaneWants{
			node:      a.cfg.NodeName,
			peerAddrs: len(a.cfg.DataplaneInterfaces) > 0,
			fastPorts: a.cfg.FastPath && a.cfg.CgroupPath != "",
		},
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_dataplane_sync_errors_total",
			Help: "Failed updates of the eBPF maps from the catalog (a full map, for one), by maps: virtual_ips, peer_addresses, fastpath_ports, peer_ids; catalog when the catalog could not be read, dataplane when the dataplane refused the sync as a whole.",
		}, []string{"maps"})}
}

// run syncs until ctx ends. It starts once the view can be trusted to be
// the cluster's (catalog's WaitCaughtUp: a client's mirror has synced, a
// restarted server has replayed its raft log): the sync deletes whatever
// the view lacks, and a view that is empty or behind at start-up would
// wipe the VIPs a restart is meant to keep.
func (s *dataplaneSync) run(ctx context.Context) {
	a := s.a
	if err := a.cluster.WaitCaughtUp(ctx); err != nil {
		return
	}
	for {
		ws := memdb.NewWatchSet()
		want, err := desiredDataplane(ws, a.cluster.View(), s.wants)
		if err != nil {
			// Never sync a partial state: it would delete the rest.
			s.errors.WithLabelValues("catalog").Inc()
			a.log.Warn("read the catalog for the dataplane's maps", "err", err)
		} else if err := a.dataplane.Sync(want); err != nil {
			// A full map lands here: logged, counted, retried on the
			// next change or after 5 s.
			s.count(err)
			a.log.Warn("sync the catalog to the dataplane's maps", "err", err)
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = ws.WatchCtx(wctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
	}
}

// count counts a failed Sync once per map it names, or as "dataplane".
func (s *dataplaneSync) count(err error) {
	var serr *dataplane.SyncError
	if !errors.As(err, &serr) {
		s.errors.WithLabelValues("dataplane").Inc()
		return
	}
	for m := range serr.Maps {
		s.errors.WithLabelValues(m).Inc()
	}
}

// dataplaneWants says which parts of the desired state the loaded layers
// use, so the others are not read (nor watched).
type dataplaneWants struct {
	// node is this node's name, whose instances' ports go to the fast path.
	node string
	// peerAddrs: the TC layer counts per peer, by address.
	peerAddrs bool
	// fastPorts: the fast path splices this node's instance legs.
	fastPorts bool
}

// desiredDataplane is what the eBPF maps should hold for the catalog view
// st: every virtual IP (IPv4 and IPv6) of an imported service; every
// peering, so a peer keeps its id while it has no VIP; with peerAddrs, the
// addresses of each peer's servers and of its instances' gateways; with
// fastPorts, the ports of the typical services on node w.node. It reads
// nothing but st (adding its watches to ws).
func desiredDataplane(ws memdb.WatchSet, st *state.Store, w dataplaneWants) (dataplane.Desired, error) {
	var d dataplane.Desired
	_, vips, err := st.VirtualIPs(ws)
	if err != nil {
		return d, err
	}
	d.VIPs = map[netip.Addr]dataplane.VIPTarget{}
	for _, v := range vips {
		for _, a := range []string{v.IPv4, v.IPv6} {
			if ip, err := netip.ParseAddr(a); err == nil {
				d.VIPs[ip.Unmap()] = dataplane.VIPTarget{Peer: v.Peer, Service: v.Service}
			}
		}
	}
	_, peerings, err := st.Peerings(ws)
	if err != nil {
		return d, err
	}
	for _, p := range peerings {
		d.Peers = append(d.Peers, p.Name)
	}
	if w.peerAddrs {
		if d.PeerAddrs, err = peerAddrs(ws, st, peerings); err != nil {
			return d, err
		}
	}
	if w.fastPorts {
		_, svcs, err := st.NodeServices(ws, "", w.node)
		if err != nil {
			return d, err
		}
		for _, svc := range svcs {
			if svc.Kind == "" && svc.Port > 0 && svc.Port < 65536 && !slices.Contains(d.FastPathPorts, uint16(svc.Port)) {
				d.FastPathPorts = append(d.FastPathPorts, uint16(svc.Port))
			}
		}
		slices.Sort(d.FastPathPorts)
	}
	return d, nil
}

// peerAddrs maps each peer's server addresses and its instances' gateway
// addresses to the peer's name.
func peerAddrs(ws memdb.WatchSet, st *state.Store, peerings []*state.Peering) (map[netip.Addr]string, error) {
	out := map[netip.Addr]string{}
	for _, p := range peerings {
		for _, hp := range p.PeerServerAddresses {
			if host, _, err := net.SplitHostPort(hp); err == nil {
				if ip, err := netip.ParseAddr(host); err == nil {
					out[ip.Unmap()] = p.Name
				}
			}
		}
		_, svcs, err := st.Services(ws, p.Name)
		if err != nil {
			return nil, err
		}
		for name := range svcs {
			_, nodes, err := st.ServiceNodes(ws, p.Name, name)
			if err != nil {
				return nil, err
			}
			for _, sn := range nodes {
				if ip, err := netip.ParseAddr(sn.Service.TaggedAddresses[state.TaggedAddressGateway].Address); err == nil {
					out[ip.Unmap()] = p.Name
				}
			}
		}
	}
	return out, nil
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
	if c.a.dataplane == nil {
		return
	}
	counts, err := c.a.dataplane.PeerCountersByName()
	if err != nil {
		return
	}
	for name, pc := range counts {
		ch <- prometheus.MustNewConstMetric(descPeerBytes, prometheus.CounterValue, float64(pc.RxBytes), name, "rx")
		ch <- prometheus.MustNewConstMetric(descPeerBytes, prometheus.CounterValue, float64(pc.TxBytes), name, "tx")
		ch <- prometheus.MustNewConstMetric(descPeerPackets, prometheus.CounterValue, float64(pc.RxPackets), name, "rx")
		ch <- prometheus.MustNewConstMetric(descPeerPackets, prometheus.CounterValue, float64(pc.TxPackets), name, "tx")
	}
}
