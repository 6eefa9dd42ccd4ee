package httpapi

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/agent/local"
	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
)

// Tagged addresses of an imported service's entries that carry its virtual
// IPs: "virtual" as Consul names a transparent-proxy virtual IP, and
// "virtual_ipv6" (peerd's) for the IPv6 one.
const (
	TaggedAddressVirtual     = "virtual"
	TaggedAddressVirtualIPv6 = "virtual_ipv6"
)

// virtualIPs lists the virtual IPs of imported services (?peer= filters).
// virtualIPs lists those of the services the token may read.
func (s *Server) virtualIPs(w http.ResponseWriter, r *http.Request) (any, error) {
	f, err := s.filter(r)
	if err != nil {
		return nil, err
	}
	return s.readFiltered(w, r, f, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		idx, all, err := st.VirtualIPs(ws)
		if err != nil {
			return 0, nil, err
		}
		out := []*state.VirtualIP{}
		for _, v := range all {
			if p := peerParam(r); (p == "" || strings.EqualFold(p, v.Peer)) && f.service(v.Service) {
				out = append(out, v)
			}
		}
		return idx, out, nil
	})
}

// catalogService is Consul's CatalogService: one instance flattened with its node.
type catalogService struct {
	ID                       string
	Node                     string
	Address                  string
	Datacenter               string
	TaggedAddresses          map[string]string
	NodeMeta                 map[string]string
	ServiceKind              string
	ServiceID                string
	ServiceName              string
	ServiceAddress           string
	ServiceTaggedAddresses   map[string]state.ServiceAddress `json:",omitempty"`
	ServiceTags              []string
	ServiceMeta              map[string]string
	ServicePort              int
	ServiceSocketPath        string `json:",omitempty"`
	ServiceWeights           state.Weights
	ServiceEnableTagOverride bool
	ServiceProxy             *state.ProxyConfig `json:",omitempty"`
	ServiceConnect           *state.Connect     `json:",omitempty"`
	PeerName                 string             `json:",omitempty"`
	Namespace                string             `json:",omitempty"`
	Partition                string             `json:",omitempty"`
	CreateIndex              uint64
	ModifyIndex              uint64
}

// serviceEntry is Consul's ServiceEntry (health endpoints).
type serviceEntry struct {
	Node    *state.Node
	Service agentService
	Checks  []*state.HealthCheck
}

func (s *Server) catalogDatacenters(w http.ResponseWriter, r *http.Request) (any, error) {
	return []string{s.cluster.Config().Datacenter}, nil
}

func (s *Server) catalogNodes(w http.ResponseWriter, r *http.Request) (any, error) {
	meta, err := nodeMetaFilter(r)
	if err != nil {
		return nil, err
	}
	f, err := s.filter(r)
	if err != nil {
		return nil, err
	}
	return s.readFiltered(w, r, f, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		idx, nodes, err := st.Nodes(ws, peerParam(r))
		out := []*state.Node{}
		for _, n := range nodes {
			if metaMatches(n.Meta, meta) && f.node(n.Node) {
				out = append(out, n)
			}
		}
		return idx, out, err
	})
}

func (s *Server) catalogNode(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("node")
	f, err := s.filter(r)
	if err != nil {
		return nil, err
	}
	return s.readFiltered(w, r, f, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		idx, node, err := st.Node(ws, peerParam(r), name)
		if err != nil || node == nil {
			return idx, (*state.Node)(nil), err // Consul answers null
		}
		if !f.node(node.Node) {
			return idx, (*state.Node)(nil), nil // a node the token may not read: as if missing
		}
		sidx, svcs, err := st.NodeServices(ws, peerParam(r), name)
		if err != nil {
			return 0, nil, err
		}
		m := map[string]agentService{}
		for _, svc := range svcs {
			if f.service(svc.Service) {
				m[svc.ID] = s.toAgentService(svc)
			}
		}
		return max(idx, sidx), map[string]any{"Node": node, "Services": m}, nil
	})
}

func (s *Server) catalogServices(w http.ResponseWriter, r *http.Request) (any, error) {
	f, err := s.filter(r)
	if err != nil {
		return nil, err
	}
	return s.readFiltered(w, r, f, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		idx, all, err := st.Services(ws, peerParam(r))
		if err != nil {
			return 0, nil, err
		}
		for name := range all {
			if !f.service(name) {
				delete(all, name)
			}
		}
		return idx, all, nil
	})
}

func (s *Server) catalogService(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("service")
	match, err := parseInstanceFilter(r)
	if err != nil {
		return nil, err
	}
	f, err := s.filter(r)
	if err != nil {
		return nil, err
	}
	return s.readFiltered(w, r, f, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		idx, sns, err := st.ServiceNodes(ws, peerParam(r), name)
		if err != nil {
			return 0, nil, err
		}
		var vip *state.VirtualIP
		if peer := peerParam(r); peer != "" && len(sns) > 0 {
			var vidx uint64
			if vidx, vip, err = st.VirtualIP(ws, peer, name); err != nil {
				return 0, nil, err
			}
			idx = max(idx, vidx)
		}
		out := []catalogService{}
		for _, sn := range sns {
			if !match.matches(sn.Node, sn.Service) || !f.instance(sn.Node, sn.Service) {
				continue
			}
			cs := toCatalogService(sn.Node, sn.Service)
			if vip != nil {
				// Consul's transparent-proxy virtual IP, as a tagged address.
				cs.ServiceTaggedAddresses = maps.Clone(cs.ServiceTaggedAddresses)
				if cs.ServiceTaggedAddresses == nil {
					cs.ServiceTaggedAddresses = map[string]state.ServiceAddress{}
				}
				cs.ServiceTaggedAddresses[TaggedAddressVirtual] = state.ServiceAddress{Address: vip.IPv4, Port: sn.Service.Port}
				if vip.IPv6 != "" {
					cs.ServiceTaggedAddresses[TaggedAddressVirtualIPv6] = state.ServiceAddress{Address: vip.IPv6, Port: sn.Service.Port}
				}
			}
			out = append(out, cs)
		}
		return idx, out, nil
	})
}

func toCatalogService(n *state.Node, svc *state.Service) catalogService {
	tags := svc.Tags
	if tags == nil {
		tags = []string{}
	}
	return catalogService{
		ID: n.ID, Node: n.Node, Address: n.Address, Datacenter: n.Datacenter, TaggedAddresses: n.TaggedAddresses,
		NodeMeta: n.Meta, ServiceKind: svc.Kind, ServiceID: svc.ID, ServiceName: svc.Service,
		ServiceAddress: svc.Address, ServiceTaggedAddresses: svc.TaggedAddresses, ServiceTags: tags,
		ServiceMeta: svc.Meta, ServicePort: svc.Port, ServiceSocketPath: svc.SocketPath, ServiceWeights: svc.Weights,
		ServiceEnableTagOverride: svc.EnableTagOverride, ServiceProxy: svc.Proxy, ServiceConnect: svc.Connect,
		PeerName: svc.PeerName, Namespace: svc.Namespace, Partition: svc.Partition,
		CreateIndex: svc.CreateIndex, ModifyIndex: svc.ModifyIndex,
	}
}

func (s *Server) healthService(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("service")
	q := r.URL.Query()
	_, passing := q["passing"]
	if v := q.Get("passing"); v == "false" || v == "0" {
		passing = false
	}
	match, err := parseInstanceFilter(r)
	if err != nil {
		return nil, err
	}
	f, err := s.filter(r)
	if err != nil {
		return nil, err
	}
	return s.readFiltered(w, r, f, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		idx, csns, err := st.CheckServiceNodes(ws, peerParam(r), name)
		if err != nil {
			return 0, nil, err
		}
		out := []serviceEntry{}
		for _, csn := range csns {
			if !match.matches(csn.Node, csn.Service) || !f.instance(csn.Node, csn.Service) {
				continue
			}
			if passing && state.AggregatedStatus(csn.Checks) != state.HealthPassing {
				continue
			}
			checks := csn.Checks
			if checks == nil {
				checks = []*state.HealthCheck{}
			}
			out = append(out, serviceEntry{Node: csn.Node, Service: s.toAgentService(csn.Service), Checks: checks})
		}
		return idx, out, nil
	})
}

func (s *Server) healthChecks(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("service")
	f, err := s.filter(r)
	if err != nil {
		return nil, err
	}
	return s.readFiltered(w, r, f, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		idx, csns, err := st.CheckServiceNodes(ws, peerParam(r), name)
		out := []*state.HealthCheck{}
		for _, csn := range csns {
			for _, c := range csn.Checks {
				if c.ServiceID == csn.Service.ID && f.check(c) {
					out = append(out, c)
				}
			}
		}
		return idx, out, err
	})
}

func (s *Server) healthNode(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("node")
	f, err := s.filter(r)
	if err != nil {
		return nil, err
	}
	return s.readFiltered(w, r, f, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		idx, checks, err := st.NodeChecks(ws, peerParam(r), name)
		out := []*state.HealthCheck{}
		for _, c := range checks {
			if f.check(c) {
				out = append(out, c)
			}
		}
		return idx, out, err
	})
}

func (s *Server) healthState(w http.ResponseWriter, r *http.Request) (any, error) {
	status := r.PathValue("state")
	if status != state.HealthAny && !state.ValidHealthStatus(status) {
		return nil, errBadRequest("state %q: must be any, passing, warning or critical", status)
	}
	f, err := s.filter(r)
	if err != nil {
		return nil, err
	}
	return s.readFiltered(w, r, f, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		idx, nodes, err := st.Nodes(ws, peerParam(r))
		if err != nil {
			return 0, nil, err
		}
		out := []*state.HealthCheck{}
		for _, n := range nodes {
			cidx, checks, err := st.NodeChecks(ws, peerParam(r), n.Node)
			if err != nil {
				return 0, nil, err
			}
			idx = max(idx, cidx)
			for _, c := range checks {
				if (status == state.HealthAny || c.Status == status) && f.check(c) {
					out = append(out, c)
				}
			}
		}
		return idx, out, nil
	})
}

// catalogRegistration is Consul's CatalogRegistration, as the official client
// sends it: registers a node and optionally a service and checks directly in
// the catalog (for external services no agent runs for).
type catalogRegistration struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	NodeMeta        map[string]string
	Service         *registrationService
	Check           *registrationCheck
	Checks          []*registrationCheck
	SkipNodeUpdate  bool
	Partition       string
	Namespace       string
	Locality        map[string]any
}

// registrationService is Consul's AgentService as a request body; read-only
// fields the client echoes back (indexes, hash) are accepted and ignored.
type registrationService struct {
	Kind              string
	ID                string
	Service           string
	Tags              []string
	Meta              map[string]string
	Port              int
	Address           string
	SocketPath        string
	TaggedAddresses   map[string]state.ServiceAddress
	Weights           *state.Weights
	EnableTagOverride bool
	Proxy             *state.ProxyConfig
	Connect           *state.Connect
	PeerName          string
	Namespace         string
	Partition         string
	Datacenter        string
	Locality          map[string]any
	ContentHash       string
	CreateIndex       uint64
	ModifyIndex       uint64
}

// registrationCheck is Consul's AgentCheck as a request body. Definition is
// what the client last read; only its known fields are kept.
type registrationCheck struct {
	Node        string
	CheckID     string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	Type        string
	ExposedPort int
	Definition  map[string]any
	Namespace   string
	Partition   string
	PeerName    string
	CreateIndex uint64
	ModifyIndex uint64
}

func (s *Server) catalogRegister(w http.ResponseWriter, r *http.Request) (any, error) {
	var req catalogRegistration
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Node == "" {
		return nil, errBadRequest("Node: missing node name")
	}
	if req.Address == "" && !req.SkipNodeUpdate {
		return nil, errBadRequest("Address: missing node address")
	}
	reg := &state.RegisterRequest{
		Node: &state.Node{ID: req.ID, Node: req.Node, Address: req.Address, Datacenter: s.cluster.Config().Datacenter,
			TaggedAddresses: req.TaggedAddresses, Meta: req.NodeMeta},
		SkipNodeUpdate: req.SkipNodeUpdate,
	}
	if req.Service != nil {
		// The official client sends Consul's AgentService, whose Weights is
		// not a pointer: an unset one arrives as {0, 0}. Treat it as unset
		// (the 1/1 default) instead of refusing Passing 0.
		if w := req.Service.Weights; w != nil && *w == (state.Weights{}) {
			req.Service.Weights = nil
		}
		def := &state.ServiceDefinition{
			Kind: req.Service.Kind, ID: req.Service.ID, Name: req.Service.Service, Tags: req.Service.Tags,
			Address: req.Service.Address, TaggedAddresses: req.Service.TaggedAddresses, Meta: req.Service.Meta,
			Port: req.Service.Port, SocketPath: req.Service.SocketPath, EnableTagOverride: req.Service.EnableTagOverride,
			Weights: req.Service.Weights, Proxy: req.Service.Proxy, Connect: req.Service.Connect,
		}
		svc, _, err := local.ServiceFromDefinition(def)
		if err != nil {
			return nil, errBadRequest("Service.%v", err)
		}
		reg.Service = svc
	}
	checks := req.Checks
	if req.Check != nil {
		checks = append([]*registrationCheck{req.Check}, checks...)
	}
	for i, c := range checks {
		if c.CheckID == "" {
			return nil, errBadRequest("Checks[%d].CheckID: missing check ID", i)
		}
		if c.Status != "" && !state.ValidHealthStatus(c.Status) {
			return nil, errBadRequest("Checks[%d].Status %q: must be passing, warning or critical", i, c.Status)
		}
		hc := &state.HealthCheck{Node: req.Node, CheckID: c.CheckID, Name: c.Name, Status: c.Status, Notes: c.Notes,
			Output: c.Output, ServiceID: c.ServiceID, Type: c.Type}
		if hc.ServiceID == "" && reg.Service != nil && c.ServiceName == reg.Service.Service {
			hc.ServiceID = reg.Service.ID
		}
		if len(c.Definition) > 0 {
			// Lenient on purpose: the client echoes fields peerd does not run
			// (gRPC, UDP, ...); the known ones are kept.
			b, _ := json.Marshal(c.Definition)
			_ = json.Unmarshal(b, &hc.Definition)
		}
		reg.Checks = append(reg.Checks, hc)
	}
	e, err := s.authorize(r)
	if err != nil {
		return nil, err
	}
	_, onNode, err := s.cluster.View().NodeServices(nil, "", req.Node)
	if err != nil {
		return nil, err
	}
	if err := s.vetCatalogRegister(e, reg, onNode); err != nil {
		return nil, err
	}
	if reg.Service != nil {
		// The captured cgroup is this node's: another node's claims are
		// checked for their form only.
		root := ""
		if req.Node == s.nodeName() {
			root = s.capturedCgroup
		}
		if err := callerClaims(reg.Service, onNode, root); err != nil {
			return nil, err
		}
	}
	if _, err := s.cluster.Apply(r.Context(), &catalog.Command{Type: catalog.CmdRegister, Register: reg}); err != nil {
		return nil, err
	}
	return true, nil
}

// catalogDeregistration is Consul's CatalogDeregistration.
type catalogDeregistration struct {
	Node       string
	Address    string
	Datacenter string
	ServiceID  string
	CheckID    string
	Namespace  string
	Partition  string
}

func (s *Server) catalogDeregister(w http.ResponseWriter, r *http.Request) (any, error) {
	var req catalogDeregistration
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Node == "" {
		return nil, errBadRequest("Node: missing node name")
	}
	dereg := &state.DeregisterRequest{Node: req.Node, ServiceID: req.ServiceID, CheckID: req.CheckID}
	e, err := s.authorize(r)
	if err != nil {
		return nil, err
	}
	view := s.cluster.View()
	_, onNode, err := view.NodeServices(nil, "", req.Node)
	if err != nil {
		return nil, err
	}
	_, checks, err := view.NodeChecks(nil, "", req.Node)
	if err != nil {
		return nil, err
	}
	if err := vetCatalogDeregister(e, dereg, onNode, checks); err != nil {
		return nil, err
	}
	_, err = s.cluster.Apply(r.Context(), &catalog.Command{Type: catalog.CmdDeregister, Deregister: dereg})
	if err != nil {
		return nil, err
	}
	return true, nil
}

// ---- query helpers ----

func peerParam(r *http.Request) string { return r.URL.Query().Get("peer") }

// instanceFilter is the ?tag= (all must match) and ?node-meta=k:v filter of
// service reads.
type instanceFilter struct {
	tags     []string
	nodeMeta map[string]string
}

func parseInstanceFilter(r *http.Request) (instanceFilter, error) {
	meta, err := nodeMetaFilter(r)
	return instanceFilter{tags: r.URL.Query()["tag"], nodeMeta: meta}, err
}

func (f instanceFilter) matches(n *state.Node, svc *state.Service) bool {
	return hasTags(svc.Tags, f.tags) && metaMatches(n.Meta, f.nodeMeta)
}

func hasTags(have, want []string) bool {
	for _, t := range want {
		if !slices.ContainsFunc(have, func(h string) bool { return strings.EqualFold(h, t) }) {
			return false
		}
	}
	return true
}

func nodeMetaFilter(r *http.Request) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range r.URL.Query()["node-meta"] {
		k, v, ok := strings.Cut(kv, ":")
		if !ok || k == "" {
			return nil, errBadRequest("node-meta %q: use key:value", kv)
		}
		out[k] = v
	}
	return out, nil
}

func metaMatches(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func rejectFilter(r *http.Request) error {
	if r.URL.Query().Get("filter") != "" {
		return errBadRequest("filter expressions are not supported yet: use ?tag=, ?node-meta= or ?passing instead")
	}
	return nil
}
