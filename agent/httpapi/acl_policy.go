package httpapi

import (
	"net/http"
	"strings"

	"github.com/google/uuid"
	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/acl"
)

// Policies and roles: /v1/acl/policy*, /v1/acl/role*.

// aclPolicyBody is a policy as Consul's client sends it.
type aclPolicyBody struct {
	ID          string
	Name        string
	Description string
	Rules       string
	Datacenters []string
	Hash        []byte
	CreateIndex uint64
	ModifyIndex uint64
	Namespace   string
	Partition   string
}

// policyListEntry is Consul's ACLPolicyListEntry: a policy without rules.
type policyListEntry struct {
	ID          string
	Name        string
	Description string
	Datacenters []string
	Hash        []byte
	CreateIndex uint64
	ModifyIndex uint64
}

// policyJSON is a policy as Consul answers it.
type policyJSON struct {
	ID          string
	Name        string
	Description string
	Rules       string
	Datacenters []string
	Hash        []byte
	CreateIndex uint64
	ModifyIndex uint64
}

func policyView(p *state.ACLPolicy) policyJSON {
	return policyJSON{ID: p.ID, Name: p.Name, Description: p.Description, Rules: p.Rules, Datacenters: p.Datacenters,
		Hash: p.Hash, CreateIndex: p.CreateIndex, ModifyIndex: p.ModifyIndex}
}

// validatePolicy checks a policy write as the endpoint does before it
// goes to raft: name, rules (a parse error is "Failed parsing rules: ..."
// naming the line), datacenters. The HTTP decode plus this is the path
// FuzzACLPolicyBody drives.
func validatePolicy(p *state.ACLPolicy) error {
	if err := state.ValidACLName("policy", p.Name); err != nil {
		return badACL("Invalid Policy: %s", trimInvalid(err))
	}
	if _, err := acl.ParseRules(p.Rules); err != nil {
		return badACL("Failed parsing rules: %v", err)
	}
	for _, dc := range p.Datacenters {
		if dc == "" {
			return badACL("Invalid Policy: an empty datacenter name")
		}
	}
	return nil
}

func trimInvalid(err error) string {
	return strings.TrimPrefix(err.Error(), state.ErrACLInvalid.Error()+": ")
}

func (s *Server) aclWriteBegin(w http.ResponseWriter, r *http.Request) (relayed bool, e acl.Enforcer, err error) {
	if err := s.aclOn(); err != nil {
		return false, e, err
	}
	if relayed, err := s.aclRelay(w, r, false); relayed {
		return true, e, err
	}
	e, err = s.aclAuthorize(r, acl.AccessWrite)
	return false, e, err
}

// aclPolicyCreate is PUT /v1/acl/policy.
func (s *Server) aclPolicyCreate(w http.ResponseWriter, r *http.Request) (any, error) {
	return s.aclPolicyWrite(w, r, "")
}

// aclPolicyUpdate is PUT /v1/acl/policy/{id}: the policy must exist.
func (s *Server) aclPolicyUpdate(w http.ResponseWriter, r *http.Request) (any, error) {
	return s.aclPolicyWrite(w, r, r.PathValue("id"))
}

func (s *Server) aclPolicyWrite(w http.ResponseWriter, r *http.Request, id string) (any, error) {
	if relayed, _, err := s.aclWriteBegin(w, r); relayed || err != nil {
		return nil, err
	}
	var body aclPolicyBody
	if err := decodeBody(r, &body); err != nil {
		return nil, tagInvalid(err)
	}
	if err := defaultTenancy(body.Namespace, body.Partition); err != nil {
		return nil, err
	}
	p := &state.ACLPolicy{ID: body.ID, Name: body.Name, Description: body.Description, Rules: body.Rules, Datacenters: body.Datacenters}
	st, err := s.aclStore()
	if err != nil {
		return nil, err
	}
	if id == "" {
		if p.ID != "" {
			return nil, badACL("Cannot specify an ID in Policy Creation")
		}
		p.ID = uuid.NewString()
	} else {
		if p.ID != "" && !strings.EqualFold(p.ID, id) {
			return nil, badACL("Policy ID in URL and payload do not match")
		}
		_, old, err := st.ACLPolicy(nil, id, false)
		if err != nil {
			return nil, err
		}
		if old == nil {
			return nil, aclError(http.StatusNotFound, "invalid", "Cannot find policy %s", id)
		}
		p.ID = old.ID
	}
	if err := validatePolicy(p); err != nil {
		return nil, err
	}
	if err := s.aclApply(r, &state.ACLRequest{Policy: p}); err != nil {
		return nil, err
	}
	_, out, err := st.ACLPolicy(nil, p.ID, false)
	if err != nil || out == nil {
		return nil, errStoreLag(err)
	}
	return policyView(out), nil
}

func errStoreLag(err error) error {
	if err != nil {
		return err
	}
	return &httpError{code: http.StatusServiceUnavailable, msg: "the write is committed but this server has not applied it yet: read it again"}
}

// aclPolicyRead is GET /v1/acl/policy/{id} or /v1/acl/policy/name/{name}:
// 404 when there is none.
func (s *Server) aclPolicyRead(byName bool) endpoint {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		key := r.PathValue("id")
		if byName {
			key = r.PathValue("name")
		}
		return s.aclReadQuery(w, r, func(ws memdb.WatchSet, st *state.Store, _ bool) (uint64, any, error) {
			idx, p, err := st.ACLPolicy(ws, key, byName)
			if err != nil {
				return 0, nil, err
			}
			if p == nil {
				return 0, nil, errNotFound("ACL policy not found")
			}
			return idx, policyView(p), nil
		})
	}
}

// aclPolicyList is GET /v1/acl/policies: every policy without its rules.
func (s *Server) aclPolicyList(w http.ResponseWriter, r *http.Request) (any, error) {
	return s.aclReadQuery(w, r, func(ws memdb.WatchSet, st *state.Store, _ bool) (uint64, any, error) {
		idx, list, err := st.ACLPolicies(ws)
		if err != nil {
			return 0, nil, err
		}
		out := []policyListEntry{}
		for _, p := range list {
			out = append(out, policyListEntry{ID: p.ID, Name: p.Name, Description: p.Description, Datacenters: p.Datacenters,
				Hash: p.Hash, CreateIndex: p.CreateIndex, ModifyIndex: p.ModifyIndex})
		}
		return idx, out, nil
	})
}

// aclPolicyDelete is DELETE /v1/acl/policy/{id}: true. Tokens and roles
// that linked to it drop the link on their next read.
func (s *Server) aclPolicyDelete(w http.ResponseWriter, r *http.Request) (any, error) {
	if relayed, _, err := s.aclWriteBegin(w, r); relayed || err != nil {
		return nil, err
	}
	if err := s.aclApply(r, &state.ACLRequest{DeletePolicy: r.PathValue("id")}); err != nil {
		return nil, err
	}
	return true, nil
}

// ---- roles ----

// aclRoleBody is a role as Consul's client sends it.
type aclRoleBody struct {
	ID                string
	Name              string
	Description       string
	Policies          []state.ACLLink
	ServiceIdentities []*state.ACLServiceIdentity
	NodeIdentities    []*state.ACLNodeIdentity
	TemplatedPolicies []any
	Hash              []byte
	CreateIndex       uint64
	ModifyIndex       uint64
	Namespace         string
	Partition         string
}

// roleJSON is a role as Consul answers it.
type roleJSON struct {
	ID                string
	Name              string
	Description       string
	Policies          []state.ACLLink             `json:",omitempty"`
	ServiceIdentities []*state.ACLServiceIdentity `json:",omitempty"`
	NodeIdentities    []*state.ACLNodeIdentity    `json:",omitempty"`
	Hash              []byte
	CreateIndex       uint64
	ModifyIndex       uint64
}

func roleView(r *state.ACLRole) roleJSON {
	return roleJSON{ID: r.ID, Name: r.Name, Description: r.Description, Policies: r.Policies,
		ServiceIdentities: r.ServiceIdentities, NodeIdentities: r.NodeIdentities, Hash: r.Hash,
		CreateIndex: r.CreateIndex, ModifyIndex: r.ModifyIndex}
}

// validateRole checks a role write before it goes to raft.
func validateRole(b *aclRoleBody) error {
	if len(b.TemplatedPolicies) > 0 {
		return badACL("templated policies are not supported: link policies or identities")
	}
	if err := defaultTenancy(b.Namespace, b.Partition); err != nil {
		return err
	}
	if err := state.ValidACLName("role", b.Name); err != nil {
		return badACL("Invalid Role: %s", trimInvalid(err))
	}
	return nil
}

// aclRoleCreate is PUT /v1/acl/role.
func (s *Server) aclRoleCreate(w http.ResponseWriter, r *http.Request) (any, error) {
	return s.aclRoleWrite(w, r, "")
}

// aclRoleUpdate is PUT /v1/acl/role/{id}: the role must exist.
func (s *Server) aclRoleUpdate(w http.ResponseWriter, r *http.Request) (any, error) {
	return s.aclRoleWrite(w, r, r.PathValue("id"))
}

func (s *Server) aclRoleWrite(w http.ResponseWriter, r *http.Request, id string) (any, error) {
	if relayed, _, err := s.aclWriteBegin(w, r); relayed || err != nil {
		return nil, err
	}
	var body aclRoleBody
	if err := decodeBody(r, &body); err != nil {
		return nil, tagInvalid(err)
	}
	if err := validateRole(&body); err != nil {
		return nil, err
	}
	role := &state.ACLRole{ID: body.ID, Name: body.Name, Description: body.Description, Policies: body.Policies,
		ServiceIdentities: body.ServiceIdentities, NodeIdentities: body.NodeIdentities}
	st, err := s.aclStore()
	if err != nil {
		return nil, err
	}
	if id == "" {
		if role.ID != "" {
			return nil, badACL("Cannot specify an ID in Role Creation")
		}
		role.ID = uuid.NewString()
	} else {
		if role.ID != "" && !strings.EqualFold(role.ID, id) {
			return nil, badACL("Role ID in URL and payload do not match")
		}
		_, old, err := st.ACLRole(nil, id, false)
		if err != nil {
			return nil, err
		}
		if old == nil {
			return nil, aclError(http.StatusNotFound, "invalid", "Cannot find role %s", id)
		}
		role.ID = old.ID
	}
	if err := s.aclApply(r, &state.ACLRequest{Role: role}); err != nil {
		return nil, err
	}
	_, out, err := st.ACLRole(nil, role.ID, false)
	if err != nil || out == nil {
		return nil, errStoreLag(err)
	}
	return roleView(out), nil
}

// aclRoleRead is GET /v1/acl/role/{id} or /v1/acl/role/name/{name}: 404
// when there is none (Consul's client answers nil then).
func (s *Server) aclRoleRead(byName bool) endpoint {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		key := r.PathValue("id")
		if byName {
			key = r.PathValue("name")
		}
		return s.aclReadQuery(w, r, func(ws memdb.WatchSet, st *state.Store, _ bool) (uint64, any, error) {
			idx, role, err := st.ACLRole(ws, key, byName)
			if err != nil {
				return 0, nil, err
			}
			if role == nil {
				return 0, nil, errNotFound("ACL role not found")
			}
			return idx, roleView(role), nil
		})
	}
}

// aclRoleList is GET /v1/acl/roles (?policy= keeps the roles linking to
// that policy ID).
func (s *Server) aclRoleList(w http.ResponseWriter, r *http.Request) (any, error) {
	policy := r.URL.Query().Get("policy")
	return s.aclReadQuery(w, r, func(ws memdb.WatchSet, st *state.Store, _ bool) (uint64, any, error) {
		idx, list, err := st.ACLRoles(ws, policy)
		if err != nil {
			return 0, nil, err
		}
		out := []roleJSON{}
		for _, role := range list {
			out = append(out, roleView(role))
		}
		return idx, out, nil
	})
}

// aclRoleDelete is DELETE /v1/acl/role/{id}: true.
func (s *Server) aclRoleDelete(w http.ResponseWriter, r *http.Request) (any, error) {
	if relayed, _, err := s.aclWriteBegin(w, r); relayed || err != nil {
		return nil, err
	}
	if err := s.aclApply(r, &state.ACLRequest{DeleteRole: r.PathValue("id")}); err != nil {
		return nil, err
	}
	return true, nil
}
