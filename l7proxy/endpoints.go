package l7proxy

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/l7proxy/policy"
)

type endpointKind int

const (
	// epLocal is an instance on this node: plaintext over loopback.
	epLocal endpointKind = iota
	// epNode is an instance on another node of the cluster (or any
	// instance reached through a gateway): mTLS to that node's gateway.
	epNode
	// epPeer is an instance in a peer cluster: mTLS to its gateway.
	epPeer
)

func (k endpointKind) String() string {
	return [...]string{"local", "node", "peer"}[k]
}

// endpoint is one place a connection or request can go.
type endpoint struct {
	kind endpointKind
	// addr is what is dialled: the instance (local) or a gateway.
	addr    string
	service string
	peer    string
	// sni and ids are the TLS server name to send and the SPIFFE IDs the
	// server may present (node and peer endpoints).
	sni string
	ids []string
	// instance is the service instance ID (a hint for the next node).
	instance string
	protocol string
	stats    *endpointStats
}

func (e *endpoint) key() string { return e.kind.String() + "|" + e.addr + "|" + e.sni }

// endpointStats are the live counters of an endpoint: outstanding work for
// least-request balancing and consecutive failures for outlier ejection.
type endpointStats struct {
	active       atomic.Int64
	failures     atomic.Int32
	ejections    atomic.Int32
	ejectedUntil atomic.Int64 // unix nanoseconds
}

func (s *endpointStats) ejected(now time.Time) bool {
	return s.ejectedUntil.Load() > now.UnixNano()
}

// balancer picks endpoints and keeps their statistics.
type balancer struct {
	p     *Proxy
	stats sync.Map // endpoint key -> *endpointStats
	rr    sync.Map // target key -> *atomic.Uint64
}

func (b *balancer) statsFor(key string) *endpointStats {
	if s, ok := b.stats.Load(key); ok {
		return s.(*endpointStats)
	}
	s, _ := b.stats.LoadOrStore(key, &endpointStats{})
	return s.(*endpointStats)
}

// succeeded resets an endpoint's failure count.
func (b *balancer) succeeded(ep *endpoint) {
	ep.stats.failures.Store(0)
	ep.stats.ejections.Store(0)
}

// failed counts a connect failure and ejects the endpoint after
// OutlierFailures in a row, for OutlierEjection doubled per ejection in a
// row.
func (b *balancer) failed(ep *endpoint) {
	b.p.m.connectFail.WithLabelValues(ep.service, ep.peer).Inc()
	if int(ep.stats.failures.Add(1)) < b.p.cfg.OutlierFailures {
		return
	}
	ep.stats.failures.Store(0)
	n := min(ep.stats.ejections.Add(1), 10)
	d := b.p.cfg.OutlierEjection << (n - 1)
	ep.stats.ejectedUntil.Store(b.p.cfg.Now().Add(d).UnixNano())
	b.p.m.ejections.WithLabelValues(ep.service, ep.peer).Inc()
	b.p.log.Warn("endpoint ejected after consecutive connect failures", "service", ep.service, "peer", ep.peer,
		"endpoint", ep.addr, "for", d)
}

// pick chooses among eps (all healthy candidates of one target) with the
// policy, skipping those in tried; ejected endpoints are used only when
// every endpoint is ejected (as Envoy's panic threshold does).
func (b *balancer) pick(targetKey, lbPolicy string, eps []*endpoint, tried map[string]bool) *endpoint {
	now := b.p.cfg.Now()
	var live, ejected []*endpoint
	for _, ep := range eps {
		if tried[ep.key()] {
			continue
		}
		if ep.stats.ejected(now) {
			ejected = append(ejected, ep)
		} else {
			live = append(live, ep)
		}
	}
	if len(live) == 0 {
		live = ejected
	}
	switch len(live) {
	case 0:
		return nil
	case 1:
		return live[0]
	}
	switch lbPolicy {
	case "round_robin":
		c, _ := b.rr.LoadOrStore(targetKey, new(atomic.Uint64))
		return live[c.(*atomic.Uint64).Add(1)%uint64(len(live))]
	case "random":
		return live[rand.IntN(len(live))]
	default: // least_request: the better of two random choices
		i := rand.IntN(len(live))
		j := rand.IntN(len(live) - 1)
		if j >= i {
			j++
		}
		a, c := live[i], live[j]
		if c.stats.active.Load() < a.stats.active.Load() {
			return c
		}
		return a
	}
}

// endpointsFor lists the healthy endpoints of a target. viaGateway makes
// even this node's instances go through a gateway (the caller side of a
// local upstream, where intentions are enforced by the destination).
func (p *Proxy) endpointsFor(st *state.Store, t policy.Target, filter *policy.Filter, viaGateway bool) ([]*endpoint, error) {
	peer := t.Peer
	if peer == "" && t.Datacenter != "" && t.Datacenter != p.cfg.Datacenter {
		var err error
		if peer, err = p.peerForDatacenter(st, t.Datacenter); err != nil {
			return nil, err
		}
	}
	_, csns, err := st.CheckServiceNodes(nil, peer, t.Service)
	if err != nil {
		return nil, fmt.Errorf("instances of %s: %w", targetName(t), err)
	}
	var local *trustSet
	if peer == "" {
		if local, err = p.trust.localTrust(st); err != nil {
			return nil, err
		}
	}
	protocol := ""
	if peer == "" {
		protocol = protocolOf(st, t.Service)
	}
	var out []*endpoint
	for _, csn := range csns {
		if state.AggregatedStatus(csn.Checks) != state.HealthPassing {
			continue
		}
		if filter != nil && !filter.Match(csn) {
			continue
		}
		svc, node := csn.Service, csn.Node
		ep := &endpoint{service: t.Service, peer: peer, instance: svc.ID, protocol: protocol}
		switch {
		case peer != "":
			gw := svc.TaggedAddresses[state.TaggedAddressGateway]
			if gw.Address == "" || gw.Port == 0 {
				continue // the exporting node advertises no gateway
			}
			ep.kind, ep.addr = epPeer, net.JoinHostPort(gw.Address, strconv.Itoa(gw.Port))
			ep.sni, ep.protocol = svc.Meta[state.MetaPeerSNI], cmp.Or(svc.Meta[state.MetaPeerProtocol], "tcp")
			ep.ids = strings.Split(svc.Meta[state.MetaPeerSPIFFEIDs], ",")
		case node.Node == p.cfg.NodeName && !viaGateway:
			ep.kind = epLocal
			ep.addr = net.JoinHostPort(cmp.Or(svc.Address, node.Address), strconv.Itoa(svc.Port))
		default:
			port, err := strconv.Atoi(node.Meta[state.GatewayPortMeta])
			if err != nil || port <= 0 {
				continue // that node runs no gateway
			}
			ep.kind, ep.addr = epNode, net.JoinHostPort(node.Address, strconv.Itoa(port))
			ep.sni = identity.InternalSNI(t.Service, identity.DefaultNamespace, p.cfg.Datacenter, local.td)
			id, err := identity.ServiceID(local.td, identity.DefaultNamespace, p.cfg.Datacenter, t.Service)
			if err != nil {
				return nil, err
			}
			ep.ids = []string{id.String()}
		}
		ep.stats = p.lb.statsFor(ep.key())
		out = append(out, ep)
	}
	return out, nil
}

// peerForDatacenter maps a datacenter to the peer that is it: peerd has no
// WAN federation, so another datacenter is reached through the peering
// with a cluster of that datacenter.
func (p *Proxy) peerForDatacenter(st *state.Store, dc string) (string, error) {
	_, peerings, err := st.Peerings(nil)
	if err != nil {
		return "", fmt.Errorf("peerings: %w", err)
	}
	for _, pr := range peerings {
		if pr.Remote.Datacenter == dc && pr.State != state.PeeringDeleting && pr.State != state.PeeringTerminated {
			return pr.Name, nil
		}
	}
	return "", fmt.Errorf("no peering with a cluster of datacenter %q: peer with it to fail over there", dc)
}

func targetName(t policy.Target) string {
	s := t.Service
	if t.Subset != "" {
		s = t.Subset + "." + s
	}
	switch {
	case t.Peer != "":
		s += " (peer " + t.Peer + ")"
	case t.Datacenter != "":
		s += " (datacenter " + t.Datacenter + ")"
	}
	return s
}

// targetKey identifies a target for round-robin state.
func targetKey(t policy.Target) string {
	return t.Service + "|" + t.Subset + "|" + t.Peer + "|" + t.Datacenter
}

// choice is the endpoints chosen for a resolution: the first candidate
// target that has a healthy endpoint.
type choice struct {
	target policy.Target
	eps    []*endpoint
}

// choose walks res.Candidates in order (failover) and returns the first
// target with healthy endpoints.
func (p *Proxy) choose(st *state.Store, res policy.Resolution, viaGateway bool) (choice, error) {
	var errs []string
	for _, t := range res.Candidates {
		eps, err := p.endpointsFor(st, t, res.Filters[t], viaGateway)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if len(eps) > 0 {
			return choice{target: t, eps: eps}, nil
		}
		errs = append(errs, "no healthy instance of "+targetName(t))
	}
	return choice{}, fmt.Errorf("%w: %s", errNoHealthy, strings.Join(errs, "; "))
}
