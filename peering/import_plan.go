package peering

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

// errUnknownInstance refuses a health update for an instance that is not
// imported; the NACK makes the exporter resend the service in full.
var errUnknownInstance = errors.New("health update for an instance that is not imported")

// importPlan is the catalog writes for one response.
type importPlan struct {
	registers   []*state.RegisterRequest
	deregisters []*state.DeregisterRequest
	// counts is the instances each service it changes will have, for the
	// quotas.
	counts map[string]int
}

// planImport computes the writes that apply d for peer, reading the
// current imports from st (nothing is written).
// dc is the peer's datacenter, given to the imported nodes.
func planImport(st *state.Store, peer, dc string, r *pbpeerstream.Response, d *decodedResource) (*importPlan, error) {
	switch {
	case r.GetResourceUrl() == pbpeerstream.TypeURLExportedService:
		return planService(st, peer, dc, r.GetResourceId(), d)
	case d.list != nil || (r.GetResourceUrl() == pbpeerstream.TypeURLExportedServiceList && d.op == pbpeerstream.Operation_OPERATION_DELETE):
		return planKeepOnly(st, peer, d.list.GetServices())
	}
	return &importPlan{}, nil
}

// planService plans an ExportedService upsert (full or delta) or DELETE.
func planService(st *state.Store, peer, dc, name string, d *decodedResource) (*importPlan, error) {
	plan, remove, err := planServiceWrites(st, peer, dc, name, d)
	if err != nil {
		return nil, err
	}
	return plan, addRemovals(st, peer, plan, remove)
}

// planServiceWrites plans the registrations of an ExportedService upsert or
// DELETE and returns the instances (node/service-id) it removes; addRemovals
// turns those into deregistrations.
func planServiceWrites(st *state.Store, peer, dc, name string, d *decodedResource) (*importPlan, map[string]bool, error) {
	_, existing, err := st.CheckServiceNodes(nil, peer, name)
	if err != nil {
		return nil, nil, fmt.Errorf("read imported %q: %w", name, err)
	}
	have := map[string]state.CheckServiceNode{}
	for _, csn := range existing {
		have[csn.Node.Node+"/"+csn.Service.ID] = csn
	}
	plan := &importPlan{}
	remove := map[string]bool{}
	switch {
	case d.op == pbpeerstream.Operation_OPERATION_DELETE:
		for id := range have {
			remove[id] = true
		}
	case d.svc.GetFull():
		keep := map[string]bool{}
		for _, in := range d.svc.GetInstances() {
			keep[in.InstanceID()] = true
		}
		for id := range have {
			if !keep[id] {
				remove[id] = true
			}
		}
	default:
		for _, id := range d.svc.GetRemovedInstanceIds() {
			if _, ok := have[id]; ok {
				remove[id] = true
			}
		}
	}
	for _, in := range d.svc.GetInstances() {
		req := importRequest(peer, dc, in)
		if old, ok := have[in.InstanceID()]; ok && sameImport(old, req) {
			continue
		}
		plan.registers = append(plan.registers, req)
	}
	for _, hu := range d.svc.GetHealthUpdates() {
		old, ok := have[hu.GetInstanceId()]
		if !ok || remove[hu.GetInstanceId()] {
			return nil, nil, fmt.Errorf("exported service %s: instance %s: %w", shortID(name), shortID(hu.GetInstanceId()), errUnknownInstance)
		}
		req := healthRequest(peer, old, hu)
		if sameImport(old, req) {
			continue
		}
		plan.registers = append(plan.registers, req)
	}
	after := len(have) - len(remove)
	for _, in := range d.svc.GetInstances() {
		if _, ok := have[in.InstanceID()]; !ok {
			after++
		}
	}
	plan.counts = map[string]int{name: after}
	return plan, remove, nil
}

// planKeepOnly removes every imported service of peer not in keep.
func planKeepOnly(st *state.Store, peer string, keep []string) (*importPlan, error) {
	_, svcs, err := st.Services(nil, peer)
	if err != nil {
		return nil, fmt.Errorf("list services imported from %q: %w", peer, err)
	}
	keepSet := make(map[string]struct{}, len(keep))
	for _, n := range keep {
		keepSet[n] = struct{}{}
	}
	remove := map[string]bool{}
	plan := &importPlan{counts: map[string]int{}}
	for _, name := range slices.Sorted(maps.Keys(svcs)) {
		if _, ok := keepSet[name]; ok {
			continue
		}
		plan.counts[name] = 0
		_, sns, err := st.ServiceNodes(nil, peer, name)
		if err != nil {
			return nil, fmt.Errorf("read imported %q: %w", name, err)
		}
		for _, sn := range sns {
			remove[sn.Node.Node+"/"+sn.Service.ID] = true
		}
	}
	return plan, addRemovals(st, peer, plan, remove)
}

// addRemovals deregisters the instances (node/service-id) and then every
// node left without services.
func addRemovals(st *state.Store, peer string, plan *importPlan, remove map[string]bool) error {
	if len(remove) == 0 {
		return nil
	}
	byNode := map[string]map[string]bool{}
	for _, id := range slices.Sorted(maps.Keys(remove)) {
		node, sid, _ := strings.Cut(id, "/")
		plan.deregisters = append(plan.deregisters, &state.DeregisterRequest{Node: node, ServiceID: sid, PeerName: peer})
		if byNode[node] == nil {
			byNode[node] = map[string]bool{}
		}
		byNode[node][sid] = true
	}
	added := map[string]bool{}
	for _, r := range plan.registers {
		added[r.Node.Node] = true
	}
	for _, node := range slices.Sorted(maps.Keys(byNode)) {
		if added[node] {
			continue
		}
		_, svcs, err := st.NodeServices(nil, peer, node)
		if err != nil {
			return fmt.Errorf("read imported node %q: %w", node, err)
		}
		left := false
		for _, s := range svcs {
			if !byNode[node][s.ID] {
				left = true
			}
		}
		if !left {
			plan.deregisters = append(plan.deregisters, &state.DeregisterRequest{Node: node, PeerName: peer})
		}
	}
	return nil
}

var healthStatuses = map[pbpeerstream.HealthStatus]string{
	pbpeerstream.HealthStatus_HEALTH_STATUS_PASSING:     state.HealthPassing,
	pbpeerstream.HealthStatus_HEALTH_STATUS_WARNING:     state.HealthWarning,
	pbpeerstream.HealthStatus_HEALTH_STATUS_CRITICAL:    state.HealthCritical,
	pbpeerstream.HealthStatus_HEALTH_STATUS_MAINTENANCE: state.HealthMaint,
}

// importRequest is the registration of one imported instance: its node,
// the service (carrying the gateway, SNI, SPIFFE IDs and protocol) and one
// flattened check. dc is the peer's datacenter, the node's.
func importRequest(peer, dc string, in *pbpeerstream.ServiceInstance) *state.RegisterRequest {
	meta := make(map[string]string, len(in.GetMeta())+3)
	for k, v := range in.GetMeta() {
		if !reservedMetaKey(k) { // keys with a local meaning are not the peer's to set
			meta[k] = v
		}
	}
	meta[MetaPeerSNI] = in.GetSni()
	meta[MetaPeerSPIFFEIDs] = strings.Join(in.GetSpiffeIds(), ",")
	meta[MetaPeerProtocol] = in.GetProtocol()
	svc := &state.Service{
		ID: in.GetServiceId(), Service: in.GetService(), Tags: slices.Clone(in.GetTags()),
		Address: in.GetAddress(), Port: int(in.GetPort()), Meta: meta,
		Weights:  state.Weights{Passing: int(in.GetWeightsPassing()), Warning: int(in.GetWeightsWarning())},
		PeerName: peer,
		TaggedAddresses: map[string]state.ServiceAddress{
			TaggedAddressGateway: {Address: in.GetGatewayAddress(), Port: int(in.GetGatewayPort())},
		},
	}
	if svc.Tags == nil {
		svc.Tags = []string{}
	}
	return &state.RegisterRequest{
		PeerName: peer,
		Node:     &state.Node{ID: in.GetNodeId(), Node: in.GetNodeName(), Address: in.GetNodeAddress(), Datacenter: dc, PeerName: peer},
		Service:  svc,
		Checks:   []*state.HealthCheck{importedCheck(peer, in.GetNodeName(), svc, in.GetHealthStatus(), in.GetHealthOutput())},
	}
}

// importedCheck is the one flattened check of an imported instance.
func importedCheck(peer, node string, svc *state.Service, status pbpeerstream.HealthStatus, output string) *state.HealthCheck {
	return &state.HealthCheck{
		Node: node, CheckID: svc.ID + importedCheckSuffix, Name: "Health of the peer's instance",
		Status: healthStatuses[status], Output: output,
		ServiceID: svc.ID, ServiceName: svc.Service, Type: "peering", PeerName: peer,
	}
}

// healthRequest re-registers an imported instance as it is (old) with the
// health of a health update.
func healthRequest(peer string, old state.CheckServiceNode, hu *pbpeerstream.InstanceHealth) *state.RegisterRequest {
	n, s := old.Node, old.Service
	svc := &state.Service{
		ID: s.ID, Service: s.Service, Tags: slices.Clone(s.Tags),
		Address: s.Address, Port: s.Port, Meta: maps.Clone(s.Meta),
		Weights: s.Weights, PeerName: peer, TaggedAddresses: maps.Clone(s.TaggedAddresses),
	}
	if svc.Tags == nil {
		svc.Tags = []string{}
	}
	return &state.RegisterRequest{
		PeerName: peer,
		Node:     &state.Node{ID: n.ID, Node: n.Node, Address: n.Address, Datacenter: n.Datacenter, PeerName: peer},
		Service:  svc,
		Checks:   []*state.HealthCheck{importedCheck(peer, n.Node, svc, hu.GetHealthStatus(), hu.GetHealthOutput())},
	}
}

// sameImport reports whether an imported instance already matches req.
func sameImport(old state.CheckServiceNode, req *state.RegisterRequest) bool {
	n, s := old.Node, old.Service
	if n.ID != req.Node.ID || n.Address != req.Node.Address || n.Datacenter != req.Node.Datacenter {
		return false
	}
	r := req.Service
	if s.Service != r.Service || s.Address != r.Address || s.Port != r.Port || s.Weights != r.Weights ||
		!slices.Equal(s.Tags, r.Tags) || !maps.Equal(s.Meta, r.Meta) || !maps.Equal(s.TaggedAddresses, r.TaggedAddresses) {
		return false
	}
	want := req.Checks[0]
	for _, c := range old.Checks {
		if c.CheckID == want.CheckID {
			return c.Status == want.Status && c.Output == want.Output && len(old.Checks) == 1
		}
	}
	return false
}
