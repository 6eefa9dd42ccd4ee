package local

// Maintenance mode, as Consul's agent has it: a critical check,
// _node_maintenance on the node or _service_maintenance:<id> on one
// service, which takes the node's services (or the one service) out of
// healthy results until it is removed. It has no runner: nothing but
// disabling maintenance changes it. It is kept in StateDir with the other
// API-made state, and survives the service being registered again.

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/peerd/peerd/catalog/state"
)

// Maintenance check IDs, as Consul names them.
const (
	NodeMaintenanceCheckID   = "_node_maintenance"
	ServiceMaintenancePrefix = "_service_maintenance:"
)

// MaintenanceCheckType is the Type of a maintenance check, as Consul's.
const MaintenanceCheckType = "maintenance"

// Consul's notes for a maintenance check enabled without a reason.
const (
	defaultNodeMaintReason    = "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
	defaultServiceMaintReason = "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
)

// ServiceMaintenanceCheckID is the maintenance check ID of service id.
func ServiceMaintenanceCheckID(id string) string { return ServiceMaintenancePrefix + id }

// maintenanceRecord is one maintenance mode in StateDir; ServiceID "" is
// the node's.
type maintenanceRecord struct {
	ServiceID string `json:",omitempty"`
	Reason    string
}

// EnableServiceMaintenance puts service id in maintenance with reason (""
// = Consul's default note). As in Consul, it does nothing when the service
// already is in maintenance (the first reason stays).
func (s *State) EnableServiceMaintenance(ctx context.Context, id, reason string) error {
	if reason == "" {
		reason = defaultServiceMaintReason
	}
	cid := ServiceMaintenanceCheckID(id)
	s.mu.Lock()
	svc, ok := s.services[id]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("service %q: %w: no service is registered with that ID", id, ErrUnknownService)
	}
	if _, on := s.checks[cid]; on {
		s.mu.Unlock()
		return nil
	}
	s.addMaintenanceLocked(cid, reason, svc)
	s.mu.Unlock()
	s.log.Info("service entered maintenance mode", "service", id, "reason", reason)
	s.persist()
	s.write(ctx, s.registerCheck(cid))
	return nil
}

// addMaintenanceLocked adds the maintenance check cid (on svc, or the node
// when svc is nil). s.mu is held.
func (s *State) addMaintenanceLocked(cid, reason string, svc *Service) {
	name := "Node Maintenance Mode"
	var owner *state.Service
	if svc != nil {
		name, owner = "Service Maintenance Mode", svc.Service
		if !slices.Contains(svc.Checks, cid) {
			svc.Checks = append(svc.Checks, cid)
		}
	}
	def := state.CheckType{CheckID: cid, Name: name, Notes: reason, Status: state.HealthCritical}
	if owner != nil {
		def.ServiceID = owner.ID
	}
	hc := s.healthCheck(&def, owner)
	hc.Type = MaintenanceCheckType
	s.checks[cid] = &Check{Check: hc, Definition: def, Maintenance: true}
}

// DisableServiceMaintenance takes service id out of maintenance; it does
// nothing when the service is not in maintenance.
func (s *State) DisableServiceMaintenance(ctx context.Context, id string) error {
	s.mu.Lock()
	_, ok := s.services[id]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("service %q: %w: no service is registered with that ID", id, ErrUnknownService)
	}
	return s.removeMaintenance(ctx, ServiceMaintenanceCheckID(id))
}

// EnableNodeMaintenance puts this node in maintenance with reason (""
// = Consul's default note); it does nothing when the node already is.
func (s *State) EnableNodeMaintenance(ctx context.Context, reason string) {
	if reason == "" {
		reason = defaultNodeMaintReason
	}
	s.mu.Lock()
	if _, on := s.checks[NodeMaintenanceCheckID]; on {
		s.mu.Unlock()
		return
	}
	s.addMaintenanceLocked(NodeMaintenanceCheckID, reason, nil)
	s.mu.Unlock()
	s.log.Info("node entered maintenance mode", "reason", reason)
	s.persist()
	s.write(ctx, s.registerCheck(NodeMaintenanceCheckID))
}

// DisableNodeMaintenance takes this node out of maintenance; it does
// nothing when the node is not in maintenance.
func (s *State) DisableNodeMaintenance(ctx context.Context) {
	_ = s.removeMaintenance(ctx, NodeMaintenanceCheckID)
}

// removeMaintenance removes the maintenance check cid if there is one.
func (s *State) removeMaintenance(ctx context.Context, cid string) error {
	s.mu.Lock()
	c, ok := s.checks[cid]
	s.mu.Unlock()
	if !ok || !c.Maintenance {
		return nil
	}
	s.log.Info("left maintenance mode", "check", cid)
	return s.RemoveCheck(ctx, cid)
}

// InMaintenance reports whether service id (or, with id "", the node) is
// in maintenance, and the reason.
func (s *State) InMaintenance(id string) (bool, string) {
	cid := NodeMaintenanceCheckID
	if id != "" {
		cid = ServiceMaintenanceCheckID(id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.checks[cid]
	if !ok || !c.Maintenance {
		return false, ""
	}
	return true, c.Check.Notes
}

// maintenanceRecordsLocked lists the maintenance modes to persist, with
// those restored for services not registered yet. s.mu is held.
func (s *State) maintenanceRecordsLocked() []maintenanceRecord {
	var out []maintenanceRecord
	for _, id := range slices.Sorted(maps.Keys(s.checks)) {
		c := s.checks[id]
		if c.Maintenance {
			out = append(out, maintenanceRecord{ServiceID: c.Check.ServiceID, Reason: c.Check.Notes})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(s.pendingMaint)) {
		out = append(out, maintenanceRecord{ServiceID: id, Reason: s.pendingMaint[id]})
	}
	return out
}

// restoreMaintenance re-enables persisted maintenance modes. A service not
// registered yet (one from the agent's config files, added after New)
// gets its maintenance back when it is registered.
func (s *State) restoreMaintenance(recs []maintenanceRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rec := range recs {
		if rec.ServiceID == "" {
			s.addMaintenanceLocked(NodeMaintenanceCheckID, rec.Reason, nil)
			continue
		}
		if svc, ok := s.services[rec.ServiceID]; ok {
			s.addMaintenanceLocked(ServiceMaintenanceCheckID(rec.ServiceID), rec.Reason, svc)
			continue
		}
		s.pendingMaint[rec.ServiceID] = rec.Reason
	}
}
