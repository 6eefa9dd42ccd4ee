package httpapi

import (
	"net/http"
	"strconv"

	"github.com/peerd/peerd/internal/acl"
)

// Maintenance mode (consul maint), as Consul's agent: a critical check
// that takes the node's services, or one service, out of healthy results
// (agent/local's maintenance.go keeps and persists it).

// maintenanceParams parses ?enable= (required, a boolean) and ?reason=.
func maintenanceParams(r *http.Request) (bool, string, error) {
	q := r.URL.Query()
	v, ok := q["enable"]
	if !ok || v[0] == "" {
		return false, "", errBadRequest("Missing value for enable: add ?enable=true or ?enable=false")
	}
	enable, err := strconv.ParseBool(v[0])
	if err != nil {
		return false, "", errBadRequest("Invalid value for enable: %q: use true or false", v[0])
	}
	return enable, q.Get("reason"), nil
}

// agentServiceMaintenance is PUT /v1/agent/service/maintenance/:id
// (service:write on the service).
func (s *Server) agentServiceMaintenance(w http.ResponseWriter, r *http.Request) (any, error) {
	enable, reason, err := maintenanceParams(r)
	if err != nil {
		return nil, err
	}
	id := r.PathValue("id")
	svc, _, ok := s.local.Service(id)
	if !ok {
		// Consul checks service:write on the ID it was given when there
		// is no such service, so an unknown ID does not tell a token
		// without rights that the ID is free.
		if _, err := s.require(r, acl.ResourceService, id, acl.AccessWrite); err != nil {
			return nil, err
		}
		return nil, errNotFound("Unknown service ID %q: list this agent's services with GET /v1/agent/services", id)
	}
	if _, err := s.require(r, acl.ResourceService, svc.Service, acl.AccessWrite); err != nil {
		return nil, err
	}
	if enable {
		err = s.local.EnableServiceMaintenance(r.Context(), id, reason)
	} else {
		err = s.local.DisableServiceMaintenance(r.Context(), id)
	}
	return nil, err
}

// agentNodeMaintenance is PUT /v1/agent/maintenance (node:write on this
// node).
func (s *Server) agentNodeMaintenance(w http.ResponseWriter, r *http.Request) (any, error) {
	enable, reason, err := maintenanceParams(r)
	if err != nil {
		return nil, err
	}
	if _, err := s.require(r, acl.ResourceNode, s.nodeName(), acl.AccessWrite); err != nil {
		return nil, err
	}
	if enable {
		s.local.EnableNodeMaintenance(r.Context(), reason)
	} else {
		s.local.DisableNodeMaintenance(r.Context())
	}
	return nil, nil
}
