package peering

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"sort"
	"strconv"

	"github.com/hashicorp/go-memdb"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

// watchList follows the services exported to the peer and runs one
// watcher per service.
func (e *exporter) watchList(ctx context.Context) {
	ss := e.sess
	st := ss.srv.cfg.Cluster.Store()
	type watcher struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	watchers := map[string]watcher{}
	defer func() {
		for _, w := range watchers {
			w.cancel()
			<-w.done
		}
	}()
	var owner uint64
	for {
		ws := memdb.NewWatchSet()
		_, list, err := st.ExportedServices(ws)
		if err != nil {
			e.setErr(err)
			return
		}
		names := state.ServicesExportedTo(list, ss.name)
		nameSet := make(map[string]struct{}, len(names))
		for _, n := range names {
			nameSet[n] = struct{}{}
		}
		e.mu.Lock()
		if !e.listReady || !slices.Equal(names, e.names) {
			e.listGen++
		}
		e.names, e.nameSet, e.listReady = names, nameSet, true
		for n := range e.slots {
			if _, ok := nameSet[n]; !ok {
				delete(e.slots, n)
			}
		}
		var added []string
		for _, n := range names {
			if _, ok := e.slots[n]; !ok {
				owner++
				e.slots[n] = &snapSlot{owner: owner}
				added = append(added, n)
			}
		}
		owners := map[string]uint64{}
		for _, n := range added {
			owners[n] = e.slots[n].owner
		}
		e.mu.Unlock()
		for n, w := range watchers {
			if _, ok := nameSet[n]; !ok {
				w.cancel()
				<-w.done
				delete(watchers, n)
			}
		}
		for _, n := range added {
			wctx, cancel := context.WithCancel(ctx)
			w := watcher{cancel: cancel, done: make(chan struct{})}
			watchers[n] = w
			go func() {
				defer close(w.done)
				e.watchService(wctx, n, owners[n])
			}()
		}
		signal(e.dirty)
		if err := ws.WatchCtx(ctx); err != nil {
			return
		}
	}
}

func (e *exporter) setErr(err error) {
	e.mu.Lock()
	if e.watchErr == nil {
		e.watchErr = err
	}
	e.mu.Unlock()
	signal(e.dirty)
}

// watchService keeps one exported service's snapshot current.
func (e *exporter) watchService(ctx context.Context, name string, owner uint64) {
	for {
		ws := memdb.NewWatchSet()
		snap, err := e.buildService(ws, name)
		if err != nil {
			e.setErr(err)
			return
		}
		e.mu.Lock()
		if sl := e.slots[name]; sl != nil && sl.owner == owner {
			sl.snap = snap
			e.changed[name] = struct{}{}
		}
		e.mu.Unlock()
		signal(e.dirty)
		if err := ws.WatchCtx(ctx); err != nil {
			return
		}
	}
}

// buildService reads one service's instances in their wire form.
func (e *exporter) buildService(ws memdb.WatchSet, name string) (*serviceSnap, error) {
	s := e.sess.srv
	st := s.cfg.Cluster.Store()
	_, csns, err := st.CheckServiceNodes(ws, "", name)
	if err != nil {
		return nil, fmt.Errorf("read instances of %q: %w", name, err)
	}
	protocol, err := st.ServiceProtocol(ws, name)
	if err != nil {
		return nil, err
	}
	td, err := s.trustDomain()
	if err != nil {
		return nil, err
	}
	snap := &serviceSnap{hashes: map[string][32]byte{}}
	for _, csn := range csns {
		if csn.Service == nil || csn.Node == nil || csn.Service.Kind != "" {
			continue
		}
		in := exportInstance(csn, protocol, td, s.datacenter(), e.sess.name)
		b, err := deterministic.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("marshal instance %s: %w", in.InstanceID(), err)
		}
		snap.instances = append(snap.instances, in)
		snap.hashes[in.InstanceID()] = sha256.Sum256(b)
	}
	sort.Slice(snap.instances, func(i, j int) bool { return snap.instances[i].InstanceID() < snap.instances[j].InstanceID() })
	return snap, nil
}

// exportInstance builds the wire form of one local instance for peer.
func exportInstance(csn state.CheckServiceNode, protocol string, td spiffeid.TrustDomain, dc, peer string) *pbpeerstream.ServiceInstance {
	n, svc := csn.Node, csn.Service
	health, output := flattenHealth(csn.Checks)
	in := &pbpeerstream.ServiceInstance{
		NodeName: n.Node, NodeAddress: n.Address, NodeId: n.ID,
		ServiceId: svc.ID, Service: svc.Service, Tags: slices.Clone(svc.Tags),
		Address: svc.Address, Port: uint32(max(svc.Port, 0)), Meta: withoutReservedMeta(svc.Meta),
		WeightsPassing: int32(svc.Weights.Passing), WeightsWarning: int32(svc.Weights.Warning),
		HealthStatus: health, HealthOutput: output,
		Sni:            identity.PeeredSNI(svc.Service, identity.DefaultNamespace, identity.DefaultPartition, peer, td),
		Protocol:       protocol,
		GatewayAddress: n.Address,
	}
	if id, err := identity.ServiceID(td, identity.DefaultNamespace, dc, svc.Service); err == nil {
		in.SpiffeIds = append(in.SpiffeIds, id.String())
	}
	if id, err := identity.GatewayID(td, dc); err == nil {
		in.SpiffeIds = append(in.SpiffeIds, id.String())
	}
	if p, err := strconv.ParseUint(n.Meta[GatewayPortMeta], 10, 16); err == nil {
		in.GatewayPort = uint32(p)
	}
	return in
}

// flattenHealth folds an instance's checks (its node's and its own) into
// one status, as Consul's flattenChecks does: maintenance wins, then the
// worst of critical, warning, passing. The output is the deciding check's.
func flattenHealth(checks []*state.HealthCheck) (pbpeerstream.HealthStatus, string) {
	rank := map[string]int{state.HealthPassing: 1, state.HealthWarning: 2, state.HealthCritical: 3, state.HealthMaint: 4}
	worst, output := pbpeerstream.HealthStatus_HEALTH_STATUS_PASSING, ""
	best := 0
	for _, c := range checks {
		r, ok := rank[c.Status]
		if !ok {
			r = rank[state.HealthCritical]
		}
		if r > best {
			best, output = r, c.Output
			worst = pbpeerstream.HealthStatus(r)
		}
	}
	return worst, output
}
