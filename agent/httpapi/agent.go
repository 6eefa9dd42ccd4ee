package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"strconv"

	"github.com/peerd/peerd/agent/local"
	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/acl"
	"github.com/peerd/peerd/internal/decode"
)

// agentMember is Consul's AgentMember.
type agentMember struct {
	Name        string
	Addr        string
	Port        int
	Tags        map[string]string
	Status      int
	ProtocolMin int
	ProtocolMax int
	ProtocolCur int
	DelegateMin int
	DelegateMax int
	DelegateCur int
}

func toAgentMember(m catalog.Member) agentMember {
	// Consul tags servers role=consul and clients role=node; clients such as
	// the official API's IsConsulServer rely on it.
	role := "node"
	if m.Meta.Role == "server" {
		role = "consul"
	}
	// vsn* are what `consul members` shows as Protocol (stats.go).
	tags := map[string]string{"role": role, "dc": m.Meta.Datacenter, "id": m.Meta.ID, "build": m.Meta.Build,
		"vsn": consulProtocol, "vsn_min": consulProtocolMin, "vsn_max": consulProtocolMax, "segment": ""}
	if role == "consul" {
		tags["raft_vsn"] = raftProtocol
	}
	if m.Meta.RaftAddr != "" {
		if _, port, err := net.SplitHostPort(m.Meta.RaftAddr); err == nil {
			tags["port"] = port
		}
	}
	if m.Meta.GRPCAddr != "" {
		if _, port, err := net.SplitHostPort(m.Meta.GRPCAddr); err == nil {
			tags["grpc_port"] = port
		}
	}
	return agentMember{
		Name: m.Name, Addr: m.Addr, Port: m.Port, Tags: tags, Status: int(m.Status),
		ProtocolMin: 1, ProtocolMax: 5, ProtocolCur: 2, DelegateMin: 2, DelegateMax: 5, DelegateCur: 4,
	}
}

// agentMembers is GET /v1/agent/members: the members the token may read
// (node:read), as Consul filters them.
func (s *Server) agentMembers(w http.ResponseWriter, r *http.Request) (any, error) {
	f, err := s.filter(r)
	if err != nil {
		return nil, err
	}
	out := []agentMember{}
	for _, m := range s.cluster.Members() {
		if f.node(m.Name) {
			out = append(out, toAgentMember(m))
		}
	}
	s.filterDone(w, r, f)
	return out, nil
}

// agentSelf is GET /v1/agent/self (agent:read on this node).
func (s *Server) agentSelf(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := s.requireAgent(r, acl.AccessRead); err != nil {
		return nil, err
	}
	cfg := s.cluster.Config()
	node := s.local.Node()
	return map[string]any{
		"Config": map[string]any{
			"Datacenter": cfg.Datacenter, "NodeName": cfg.NodeName, "NodeID": cfg.NodeID,
			"Server": cfg.Server, "Version": s.version, "Revision": "", "PrimaryDatacenter": cfg.Datacenter,
			"EncryptEnabled": s.cluster.GossipEncrypted(), "InsecureGossip": s.insecureGossip,
		},
		"Stats":  s.agentStats(), // stats.go
		"Member": toAgentMember(s.cluster.LocalMember()),
		"Meta":   node.Meta,
		"DebugConfig": map[string]any{
			"HTTPAddr": cfg.HTTPAddr, "GRPCAddr": cfg.GRPCAddr, "GossipAddr": s.cluster.GossipAddr(),
		},
	}, nil
}

func (s *Server) agentJoin(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := s.requireAgent(r, acl.AccessWrite); err != nil {
		return nil, err
	}
	addr := r.PathValue("address")
	if _, err := s.cluster.Join(addr); err != nil {
		return nil, errBadRequest("%v", err)
	}
	return nil, nil
}

func (s *Server) agentLeave(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := s.requireAgent(r, acl.AccessWrite); err != nil {
		return nil, err
	}
	go func() {
		_ = s.cluster.Leave(context.Background())
		_ = s.cluster.Close(context.Background())
	}()
	return nil, nil
}

// agentService is Consul's AgentService: the catalog service plus the
// datacenter and a content hash for blocking on /v1/agent/service/:id.
type agentService struct {
	*state.Service
	Datacenter  string
	ContentHash string `json:",omitempty"`
}

func (s *Server) toAgentService(svc *state.Service) agentService {
	cp := *svc
	if cp.Tags == nil {
		cp.Tags = []string{}
	}
	return agentService{Service: &cp, Datacenter: s.cluster.Config().Datacenter}
}

func (s *Server) agentServices(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := rejectFilter(r); err != nil {
		return nil, err
	}
	f, err := s.filter(r)
	if err != nil {
		return nil, err
	}
	out := map[string]agentService{}
	for id, svc := range s.local.Services() {
		if f.service(svc.Service) {
			out[id] = s.toAgentService(svc)
		}
	}
	s.filterDone(w, r, f)
	return out, nil
}

func (s *Server) agentService(w http.ResponseWriter, r *http.Request) (any, error) {
	id := r.PathValue("id")
	svc, _, ok := s.local.Service(id)
	if !ok {
		return nil, errNotFound("unknown service ID %q", id)
	}
	if _, err := s.require(r, acl.ResourceService, svc.Service, acl.AccessRead); err != nil {
		return nil, err
	}
	out := s.toAgentService(svc)
	b, _ := json.Marshal(out)
	out.ContentHash = contentHash(b)
	w.Header().Set("X-Consul-ContentHash", out.ContentHash)
	return out, nil
}

func (s *Server) agentServiceRegister(w http.ResponseWriter, r *http.Request) (any, error) {
	b, err := readBody(r)
	if err != nil {
		return nil, err
	}
	def, err := local.DecodeServiceDefinition(b)
	if err != nil {
		return nil, errBadRequest("invalid service registration: %v", err)
	}
	svc, _, err := local.ServiceFromDefinition(def)
	if err != nil {
		return nil, errBadRequest("invalid service registration: %v", err)
	}
	e, err := s.authorize(r)
	if err != nil {
		return nil, err
	}
	var existing *state.Service
	if old, _, ok := s.local.Service(svc.ID); ok {
		existing = old
	}
	if err := vetServiceWrite(e, def, svc, existing); err != nil {
		return nil, err
	}
	if err := callerClaims(svc, s.localServices(), s.capturedCgroup); err != nil {
		return nil, err
	}
	if err := s.local.AddService(r.Context(), def, false); err != nil {
		return nil, errBadRequest("invalid service registration: %v", err)
	}
	return nil, nil
}

// agentServiceDeregister needs service:write on the service (Consul's
// vetServiceUpdate).
func (s *Server) agentServiceDeregister(w http.ResponseWriter, r *http.Request) (any, error) {
	id := r.PathValue("id")
	svc, _, ok := s.local.Service(id)
	if !ok {
		return nil, errNotFound("unknown service ID %q", id)
	}
	if _, err := s.require(r, acl.ResourceService, svc.Service, acl.AccessWrite); err != nil {
		return nil, err
	}
	return nil, s.local.RemoveService(r.Context(), id)
}

func (s *Server) agentChecks(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := rejectFilter(r); err != nil {
		return nil, err
	}
	f, err := s.filter(r)
	if err != nil {
		return nil, err
	}
	out := map[string]*state.HealthCheck{}
	for id, c := range s.local.Checks() {
		if f.check(c) {
			out[id] = c
		}
	}
	s.filterDone(w, r, f)
	return out, nil
}

func (s *Server) agentCheckRegister(w http.ResponseWriter, r *http.Request) (any, error) {
	b, err := readBody(r)
	if err != nil {
		return nil, err
	}
	// Consul's body names the check "ID" where service checks say "CheckID":
	// accept either.
	g, err := decode.Generic(b, "request body")
	if err != nil {
		return nil, errBadRequest("invalid request body: %v", err)
	}
	var id string
	for k, v := range g {
		if k == "ID" || k == "id" || k == "Id" {
			id, _ = v.(string)
			delete(g, k)
		}
	}
	var def state.CheckType
	if err := decode.Into(g, &def); err != nil {
		return nil, errBadRequest("invalid check registration: %v", err)
	}
	if def.CheckID == "" {
		def.CheckID = id
	}
	if err := s.vetCheckWrite(r, def.ServiceID); err != nil {
		return nil, err
	}
	if err := s.local.AddCheck(r.Context(), &def, false); err != nil {
		if errors.Is(err, local.ErrUnknownService) {
			return nil, err
		}
		return nil, errBadRequest("invalid check registration: %v", err)
	}
	return nil, nil
}

func (s *Server) agentCheckDeregister(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := s.vetExistingCheck(r, r.PathValue("id")); err != nil {
		return nil, err
	}
	return nil, s.local.RemoveCheck(r.Context(), r.PathValue("id"))
}

func (s *Server) agentCheckTTL(status string) endpoint {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		if err := s.vetExistingCheck(r, r.PathValue("id")); err != nil {
			return nil, err
		}
		return nil, s.local.UpdateTTL(r.PathValue("id"), status, r.URL.Query().Get("note"))
	}
}

func (s *Server) agentCheckUpdate(w http.ResponseWriter, r *http.Request) (any, error) {
	var body struct {
		Status string
		Output string
	}
	if err := decodeBody(r, &body); err != nil {
		return nil, err
	}
	if err := s.vetExistingCheck(r, r.PathValue("id")); err != nil {
		return nil, err
	}
	if !state.ValidHealthStatus(body.Status) || body.Status == state.HealthMaint {
		return nil, errBadRequest("Status %q: must be passing, warning or critical", body.Status)
	}
	return nil, s.local.UpdateTTL(r.PathValue("id"), body.Status, body.Output)
}

func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err // MaxBytesError maps to 413
	}
	if len(b) == 0 {
		return nil, errBadRequest("request body is empty: send a JSON object")
	}
	return b, nil
}

func contentHash(b []byte) string {
	h := fnv.New64a()
	_, _ = h.Write(b)
	return strconv.FormatUint(h.Sum64(), 16)
}
