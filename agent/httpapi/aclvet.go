package httpapi

import (
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/acl"
	"github.com/peerd/peerd/internal/cgroupfs"
	"github.com/peerd/peerd/l7proxy"
)

// The checks of registrations, as Consul's vetServiceRegister,
// vetCheckRegister and vetRegisterWithACL make them. Service and check
// definitions in config files are the operator's own and are not vetted.

// sidecarName is the name Consul gives a sidecar registered with its
// service (Connect.SidecarService) when the sidecar names none.
func sidecarName(def *state.ServiceDefinition, svc *state.Service) string {
	if def == nil || def.Connect == nil || def.Connect.SidecarService == nil {
		return ""
	}
	if n := def.Connect.SidecarService.Name; n != "" {
		return n
	}
	return svc.Service + "-sidecar-proxy"
}

// vetServiceWrite checks that e may register svc (from def, nil for a
// catalog registration) over existing (the service with its ID, or nil):
// service:write on its name, on the name it replaces, on the service a
// connect-proxy fronts, on its sidecar, and on itself again when it claims
// a cgroup.
func vetServiceWrite(e acl.Enforcer, def *state.ServiceDefinition, svc *state.Service, existing *state.Service) error {
	if err := e.Require(acl.ResourceService, svc.Service, acl.AccessWrite); err != nil {
		return err
	}
	if existing != nil && existing.Service != svc.Service {
		if err := e.Require(acl.ResourceService, existing.Service, acl.AccessWrite); err != nil {
			return err
		}
	}
	if svc.Kind == "connect-proxy" && svc.Proxy != nil && svc.Proxy.DestinationServiceName != "" {
		if err := e.Require(acl.ResourceService, svc.Proxy.DestinationServiceName, acl.AccessWrite); err != nil {
			return err
		}
	}
	if name := sidecarName(def, svc); name != "" {
		if err := e.Require(acl.ResourceService, name, acl.AccessWrite); err != nil {
			return err
		}
	}
	// Claiming a cgroup or a pod makes every connection from it this
	// service's: issue 12 item 6 wants service:write for that service,
	// whatever the rules above become.
	if svc.Meta[l7proxy.CgroupMeta] != "" || svc.Meta[l7proxy.PodUIDMeta] != "" {
		if err := e.Require(acl.ResourceService, svc.Service, acl.AccessWrite); err != nil {
			return err
		}
	}
	return nil
}

// callerClaims checks the claims svc makes on captured callers and
// refuses them when another service of the same node makes the same one:
// connections captured from a cgroup or a pod get one identity, so each is
// one service's. Instances of the same service may share one.
//
//   - peerd-cgroup (l7proxy.CgroupMeta) must be an absolute path and, when
//     root (the node's captured cgroup, -cgroup-path) is known, root or a
//     directory below it: a claim above it would name callers the node
//     never captures, or all of them. 400 otherwise.
//   - peerd-pod-uid (l7proxy.PodUIDMeta) must be a UUID, the pod's
//     metadata.uid; it is compared in lower case. 400 otherwise.
//
// A second service claiming a cgroup (compared after filepath.Clean) or a
// pod UID is refused with 409, naming the owner.
func callerClaims(svc *state.Service, onNode []*state.Service, root string) error {
	path, uid := svc.Meta[l7proxy.CgroupMeta], svc.Meta[l7proxy.PodUIDMeta]
	if path != "" {
		if !filepath.IsAbs(path) {
			return errBadRequest("meta %s %q: want the absolute path of the service's cgroup v2 directory, e.g. /sys/fs/cgroup/system.slice/web.service", l7proxy.CgroupMeta, path)
		}
		if root != "" && !cgroupfs.Within(root, path) {
			return errBadRequest("meta %s %q is not under this node's captured cgroup %q (-cgroup-path): name the cgroup of the service's unit, pod or container below it", l7proxy.CgroupMeta, path, root)
		}
	}
	if uid != "" {
		u, err := cgroupfs.ParseUID(uid)
		if err != nil {
			return errBadRequest("meta %s: %v: give the pod's metadata.uid (the downward API's fieldRef metadata.uid)", l7proxy.PodUIDMeta, err)
		}
		uid = u
	}
	for _, o := range onNode {
		if o.ID == svc.ID || o.Service == svc.Service {
			continue
		}
		if p := o.Meta[l7proxy.CgroupMeta]; path != "" && p != "" && filepath.Clean(p) == filepath.Clean(path) {
			return &httpError{code: http.StatusConflict, msg: fmt.Sprintf(
				"service %q claims cgroup %q (meta %s), which service %q (ID %q) on this node already claims: a cgroup identifies one service; "+
					"run %q in a cgroup of its own, or deregister %q first", svc.Service, path, l7proxy.CgroupMeta, o.Service, o.ID, svc.Service, o.ID)}
		}
		if u, err := cgroupfs.ParseUID(o.Meta[l7proxy.PodUIDMeta]); uid != "" && err == nil && u == uid {
			return &httpError{code: http.StatusConflict, msg: fmt.Sprintf(
				"service %q claims pod %s (meta %s), which service %q (ID %q) on this node already claims: a pod identifies one service; "+
					"deregister %q first, or claim a container's cgroup (meta %s) instead", svc.Service, uid, l7proxy.PodUIDMeta, o.Service, o.ID, o.ID, l7proxy.CgroupMeta)}
		}
	}
	return nil
}

// localServices are this agent's services, by ID.
func (s *Server) localServices() []*state.Service {
	var out []*state.Service
	for _, svc := range s.local.Services() {
		out = append(out, svc)
	}
	slices.SortFunc(out, func(a, b *state.Service) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// vetCheckWrite checks that the request may register a check of this
// agent: service:write on the service it belongs to, node:write on this
// node for a node check (or one naming no service of this agent).
func (s *Server) vetCheckWrite(r *http.Request, serviceID string) error {
	if serviceID != "" {
		if svc, _, ok := s.local.Service(serviceID); ok {
			_, err := s.require(r, acl.ResourceService, svc.Service, acl.AccessWrite)
			return err
		}
	}
	_, err := s.require(r, acl.ResourceNode, s.nodeName(), acl.AccessWrite)
	return err
}

// vetExistingCheck checks that the request may update or remove the check
// id of this agent, by the rule of its registration. An unknown check is
// left to the operation's 404.
func (s *Server) vetExistingCheck(r *http.Request, id string) error {
	c, ok := s.local.Checks()[id]
	if !ok {
		return nil
	}
	if c.ServiceName != "" {
		_, err := s.require(r, acl.ResourceService, c.ServiceName, acl.AccessWrite)
		return err
	}
	_, err := s.require(r, acl.ResourceNode, s.nodeName(), acl.AccessWrite)
	return err
}

// vetCatalogRegister is Consul's vetRegisterWithACL: node:write on the
// node unless the node is left as it is, the service's rules of
// vetServiceWrite (against what the node has under its ID), and for each
// check service:write on its service or node:write on the node.
func (s *Server) vetCatalogRegister(e acl.Enforcer, reg *state.RegisterRequest, onNode []*state.Service) error {
	node := reg.Node.Node
	if !reg.SkipNodeUpdate {
		if err := e.Require(acl.ResourceNode, node, acl.AccessWrite); err != nil {
			return err
		}
	}
	byID := map[string]*state.Service{}
	for _, o := range onNode {
		byID[o.ID] = o
	}
	if reg.Service != nil {
		if err := vetServiceWrite(e, nil, reg.Service, byID[reg.Service.ID]); err != nil {
			return err
		}
		byID[reg.Service.ID] = reg.Service
	}
	for _, c := range reg.Checks {
		if c.ServiceID != "" {
			if svc, ok := byID[c.ServiceID]; ok {
				if err := e.Require(acl.ResourceService, svc.Service, acl.AccessWrite); err != nil {
					return err
				}
				continue
			}
		}
		if err := e.Require(acl.ResourceNode, node, acl.AccessWrite); err != nil {
			return err
		}
	}
	return nil
}

// vetCatalogDeregister is Consul's vetDeregisterWithACL: service:write on
// the service removed (or the service of the check removed), node:write
// for a node check, the whole node, or something the node does not have.
func vetCatalogDeregister(e acl.Enforcer, req *state.DeregisterRequest, onNode []*state.Service, checks []*state.HealthCheck) error {
	if req.ServiceID != "" {
		for _, svc := range onNode {
			if svc.ID == req.ServiceID {
				return e.Require(acl.ResourceService, svc.Service, acl.AccessWrite)
			}
		}
		return e.Require(acl.ResourceNode, req.Node, acl.AccessWrite)
	}
	if req.CheckID != "" {
		for _, c := range checks {
			if c.CheckID == req.CheckID && c.ServiceName != "" {
				return e.Require(acl.ResourceService, c.ServiceName, acl.AccessWrite)
			}
		}
	}
	return e.Require(acl.ResourceNode, req.Node, acl.AccessWrite)
}
