package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/acl"
	"github.com/peerd/peerd/peering"
)

// Peering is the peering controller the /v1/peering endpoints call;
// *peering.Server implements it. Its methods are safe for concurrent use,
// block until the raft leader answered (they forward to it), and fail with
// the peering package's sentinels (ErrInvalidPeerName, ErrTokenUsed, ...),
// which the endpoints map onto HTTP status codes.
type Peering interface {
	GenerateToken(ctx context.Context, req peering.GenerateTokenRequest) (string, error)
	Establish(ctx context.Context, req peering.EstablishRequest) error
	// Read returns nil, nil when no peering has the name.
	Read(ctx context.Context, name string) (*peering.PeeringInfo, error)
	List(ctx context.Context) ([]*peering.PeeringInfo, error)
	Delete(ctx context.Context, name string) error
	// RotateCA makes a new active CA root, cross-signed by the current one,
	// and returns its ID.
	RotateCA(ctx context.Context) (string, error)
	// RotateStreamSecret rotates an acceptor peering's stream secret.
	RotateStreamSecret(ctx context.Context, name string) error
}

var _ Peering = (*peering.Server)(nil)

// defaultPartition is the only admin partition peerd has.
const defaultPartition = "default"

// ---- bodies, as Consul's api package has them ----

// generateTokenRequest is the body of POST /v1/peering/token
// (api.PeeringGenerateTokenRequest, plus ExpiresIn).
type generateTokenRequest struct {
	PeerName                string
	Partition               string
	Meta                    map[string]string
	ServerExternalAddresses []string
	// ExpiresIn is peerd's: a Go duration such as "1h"; empty means the
	// token does not expire (Consul's behaviour).
	ExpiresIn string
}

type generateTokenResponse struct {
	PeeringToken string
}

// establishRequest is the body of POST /v1/peering/establish
// (api.PeeringEstablishRequest).
type establishRequest struct {
	PeerName     string
	PeeringToken string
	Partition    string
	Meta         map[string]string
}

// peeringJSON is api.Peering, plus ManualServerAddresses (newer Consul),
// LastError and ReplicationLagMs (peerd's).
type peeringJSON struct {
	ID                    string
	Name                  string
	Partition             string            `json:",omitempty"`
	DeletedAt             *time.Time        `json:",omitempty"`
	Meta                  map[string]string `json:",omitempty"`
	State                 string
	PeerID                string              `json:",omitempty"`
	PeerCAPems            []string            `json:",omitempty"`
	PeerServerName        string              `json:",omitempty"`
	PeerServerAddresses   []string            `json:",omitempty"`
	ManualServerAddresses []string            `json:",omitempty"`
	StreamStatus          peeringStreamStatus `json:"StreamStatus"`
	Remote                peeringRemote       `json:"Remote"`
	CreateIndex           uint64
	ModifyIndex           uint64
	// LastError is the stream's most recent error; empty if none.
	LastError string `json:",omitempty"`
	// ReplicationLagMs is the delay of the last applied update.
	ReplicationLagMs int64
	// PeerTrustDomain is the peer's trust domain, pinned at establishment
	// (the acceptor's at its first trust bundle).
	PeerTrustDomain string `json:",omitempty"`
	// QuotaRefusals and ImportRefusals count the peer's messages refused
	// for a quota (by quota) or as invalid imports (by reason);
	// LastRefusal is the latest one's message, LastRefusalAt its time.
	QuotaRefusals  map[string]uint64 `json:",omitempty"`
	ImportRefusals map[string]uint64 `json:",omitempty"`
	LastRefusal    string            `json:",omitempty"`
	LastRefusalAt  *time.Time        `json:",omitempty"`
	// StreamSecret is the acceptor's stream secret status (peerd's);
	// absent on the dialer.
	StreamSecret *peeringStreamSecret `json:",omitempty"`
}

type peeringStreamSecret struct {
	// BoundTrustDomain is the dialer trust domain the secret is bound to;
	// empty = unbound.
	BoundTrustDomain string
	ActiveSince      *time.Time `json:",omitempty"`
	RotationPending  bool
}

type peeringStreamStatus struct {
	ImportedServices []string
	ExportedServices []string
	LastHeartbeat    *time.Time
	LastReceive      *time.Time
	LastSend         *time.Time
}

type peeringRemote struct {
	Partition  string
	Datacenter string
}

// exportedServiceJSON is api.ResolvedExportedService.
type exportedServiceJSON struct {
	Service   string
	Partition string `json:",omitempty"`
	Namespace string `json:",omitempty"`
	Consumers exportedConsumers
}

type exportedConsumers struct {
	Peers []string `json:",omitempty"`
}

// importedServiceJSON is api.ImportedService.
type importedServiceJSON struct {
	Service         string
	Partition       string `json:",omitempty"`
	Namespace       string `json:",omitempty"`
	SourcePeer      string `json:",omitempty"`
	SourcePartition string `json:",omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func toPeeringJSON(p *peering.PeeringInfo) peeringJSON {
	return peeringJSON{
		ID:                    p.ID,
		Name:                  p.Name,
		Partition:             p.Partition,
		DeletedAt:             timePtr(p.DeletedAt),
		Meta:                  p.Meta,
		State:                 p.State,
		PeerID:                p.PeerID,
		PeerCAPems:            p.PeerCAPems,
		PeerServerName:        p.PeerServerName,
		PeerServerAddresses:   p.PeerServerAddresses,
		ManualServerAddresses: p.ManualServerAddresses,
		StreamStatus: peeringStreamStatus{
			ImportedServices: nonNil(p.StreamStatus.ImportedServices),
			ExportedServices: nonNil(p.StreamStatus.ExportedServices),
			LastHeartbeat:    timePtr(p.StreamStatus.LastHeartbeat),
			LastReceive:      timePtr(p.StreamStatus.LastReceive),
			LastSend:         timePtr(p.StreamStatus.LastSend),
		},
		Remote:           peeringRemote{Partition: p.Remote.Partition, Datacenter: p.Remote.Datacenter},
		CreateIndex:      p.CreateIndex,
		ModifyIndex:      p.ModifyIndex,
		LastError:        p.StreamStatus.LastError,
		ReplicationLagMs: p.StreamStatus.ReplicationLag.Milliseconds(),
		PeerTrustDomain:  p.PeerTrustDomain,
		QuotaRefusals:    p.StreamStatus.QuotaRefusals,
		ImportRefusals:   p.StreamStatus.ImportRefusals,
		LastRefusal:      p.StreamStatus.LastRefusal,
		LastRefusalAt:    timePtr(p.StreamStatus.LastRefusalAt),
		StreamSecret:     toStreamSecretJSON(p.StreamSecret),
	}
}

func toStreamSecretJSON(s *peering.StreamSecretStatus) *peeringStreamSecret {
	if s == nil {
		return nil
	}
	return &peeringStreamSecret{BoundTrustDomain: s.BoundTrustDomain, ActiveSince: timePtr(s.ActiveSince), RotationPending: s.RotationPending}
}

// ---- endpoints ----

// peeringController returns the controller, or a 501 when this agent runs
// without one.
func (s *Server) peeringController() (Peering, error) {
	if s.peering == nil {
		return nil, &httpError{code: http.StatusNotImplemented,
			msg: "cluster peering is not available on this agent: it was started without a peering controller"}
	}
	return s.peering, nil
}

// checkPartition refuses admin partitions other than the default one, which
// only Consul Enterprise has.
func checkPartition(p string) error {
	if p != "" && p != defaultPartition {
		return errBadRequest("partition %q does not exist: peerd has only the %q partition", p, defaultPartition)
	}
	return nil
}

func partitionParam(r *http.Request) error {
	return checkPartition(r.URL.Query().Get("partition"))
}

// peeringToken is POST /v1/peering/token.
func (s *Server) peeringToken(w http.ResponseWriter, r *http.Request) (any, error) {
	if _, err := s.require(r, acl.ResourcePeering, "", acl.AccessWrite); err != nil {
		return nil, err
	}
	p, err := s.peeringController()
	if err != nil {
		return nil, err
	}
	var req generateTokenRequest
	if r.ContentLength == 0 {
		return nil, errBadRequest("The peering arguments must be provided in the body")
	}
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.PeerName == "" {
		return nil, errBadRequest("PeerName is required in the payload when generating a new peering token.")
	}
	if err := checkPartition(req.Partition); err != nil {
		return nil, err
	}
	if err := partitionParam(r); err != nil {
		return nil, err
	}
	var expires time.Duration
	if req.ExpiresIn != "" {
		if expires, err = time.ParseDuration(req.ExpiresIn); err != nil || expires <= 0 {
			return nil, errBadRequest("invalid ExpiresIn %q: use a positive duration such as \"30m\" or \"24h\"", req.ExpiresIn)
		}
	}
	tok, err := p.GenerateToken(r.Context(), peering.GenerateTokenRequest{
		PeerName: req.PeerName, Meta: req.Meta, ServerExternalAddresses: req.ServerExternalAddresses, ExpiresIn: expires,
	})
	if err != nil {
		return nil, peeringError(err)
	}
	return generateTokenResponse{PeeringToken: tok}, nil
}

// peeringEstablish is POST /v1/peering/establish.
func (s *Server) peeringEstablish(w http.ResponseWriter, r *http.Request) (any, error) {
	if _, err := s.require(r, acl.ResourcePeering, "", acl.AccessWrite); err != nil {
		return nil, err
	}
	p, err := s.peeringController()
	if err != nil {
		return nil, err
	}
	var req establishRequest
	if r.ContentLength == 0 {
		return nil, errBadRequest("The peering arguments must be provided in the body")
	}
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.PeerName == "" {
		return nil, errBadRequest("PeerName is required in the payload when establishing a peering.")
	}
	if req.PeeringToken == "" {
		return nil, errBadRequest("PeeringToken is required in the payload when establishing a peering.")
	}
	if err := checkPartition(req.Partition); err != nil {
		return nil, err
	}
	if err := partitionParam(r); err != nil {
		return nil, err
	}
	err = p.Establish(r.Context(), peering.EstablishRequest{PeerName: req.PeerName, PeeringToken: req.PeeringToken, Meta: req.Meta})
	if err != nil {
		return nil, peeringError(err)
	}
	return struct{}{}, nil
}

// peeringRead is GET /v1/peering/:name.
func (s *Server) peeringRead(w http.ResponseWriter, r *http.Request) (any, error) {
	if _, err := s.require(r, acl.ResourcePeering, "", acl.AccessRead); err != nil {
		return nil, err
	}
	p, err := s.peeringController()
	if err != nil {
		return nil, err
	}
	if err := partitionParam(r); err != nil {
		return nil, err
	}
	name := r.PathValue("name")
	info, err := p.Read(r.Context(), name)
	if err != nil {
		return nil, peeringError(err)
	}
	if info == nil {
		return nil, errNotFound("Peering not found for %q", name)
	}
	s.setMeta(w, max(info.ModifyIndex, 1))
	return toPeeringJSON(info), nil
}

// peeringDelete is DELETE /v1/peering/:name. It answers an empty 200 once the
// peering is marked for deletion; the deletion itself is asynchronous.
func (s *Server) peeringDelete(w http.ResponseWriter, r *http.Request) (any, error) {
	if _, err := s.require(r, acl.ResourcePeering, "", acl.AccessWrite); err != nil {
		return nil, err
	}
	p, err := s.peeringController()
	if err != nil {
		return nil, err
	}
	if err := partitionParam(r); err != nil {
		return nil, err
	}
	if err := p.Delete(r.Context(), r.PathValue("name")); err != nil {
		return nil, peeringError(err)
	}
	return nil, nil
}

// peeringRotateSecret is POST /v1/peering/{name}/rotate-secret (peerd's;
// Consul rotates only by re-establishing with a new token).
func (s *Server) peeringRotateSecret(w http.ResponseWriter, r *http.Request) (any, error) {
	if _, err := s.require(r, acl.ResourcePeering, "", acl.AccessWrite); err != nil {
		return nil, err
	}
	p, err := s.peeringController()
	if err != nil {
		return nil, err
	}
	if err := partitionParam(r); err != nil {
		return nil, err
	}
	if err := p.RotateStreamSecret(r.Context(), r.PathValue("name")); err != nil {
		return nil, peeringError(err)
	}
	return nil, nil
}

// peeringList is GET /v1/peerings.
func (s *Server) peeringList(w http.ResponseWriter, r *http.Request) (any, error) {
	if _, err := s.require(r, acl.ResourcePeering, "", acl.AccessRead); err != nil {
		return nil, err
	}
	p, err := s.peeringController()
	if err != nil {
		return nil, err
	}
	if err := partitionParam(r); err != nil {
		return nil, err
	}
	infos, err := p.List(r.Context())
	if err != nil {
		return nil, peeringError(err)
	}
	out := make([]peeringJSON, 0, len(infos))
	var idx uint64 = 1
	for _, info := range infos {
		out = append(out, toPeeringJSON(info))
		idx = max(idx, info.ModifyIndex)
	}
	s.setMeta(w, idx)
	return out, nil
}

// exportedServices is GET /v1/exported-services: every exported service
// with its consumer peers, wildcards expanded. It is a catalog read, with
// blocking queries.
func (s *Server) exportedServices(w http.ResponseWriter, r *http.Request) (any, error) {
	// Consul: mesh:read (or operator:read, which the mesh rule falls back to).
	if _, err := s.require(r, acl.ResourceMesh, "", acl.AccessRead); err != nil {
		return nil, err
	}
	if err := partitionParam(r); err != nil {
		return nil, err
	}
	return s.read(w, r, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		idx, list, err := st.ExportedServices(ws)
		out := make([]exportedServiceJSON, 0, len(list))
		for _, e := range list {
			out = append(out, exportedServiceJSON{
				Service: e.Service, Partition: defaultPartition, Namespace: "default",
				Consumers: exportedConsumers{Peers: e.Peers},
			})
		}
		return idx, out, err
	})
}

// importedServices is GET /v1/imported-services: every service imported
// from a peer. It is a catalog read, with blocking queries.
func (s *Server) importedServices(w http.ResponseWriter, r *http.Request) (any, error) {
	// As exported-services: mesh:read (or operator:read); each service
	// then needs service:read, the filter of every service list.
	if _, err := s.require(r, acl.ResourceMesh, "", acl.AccessRead); err != nil {
		return nil, err
	}
	if err := partitionParam(r); err != nil {
		return nil, err
	}
	f, err := s.filter(r)
	if err != nil {
		return nil, err
	}
	return s.readFiltered(w, r, f, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		idx, list, err := peering.ImportedServicesFromStore(ws, st)
		out := make([]importedServiceJSON, 0, len(list))
		for _, e := range list {
			if !f.service(e.Service) {
				continue
			}
			out = append(out, importedServiceJSON{
				Service: e.Service, Partition: defaultPartition, Namespace: "default",
				SourcePeer: e.SourcePeer, SourcePartition: defaultPartition,
			})
		}
		return idx, out, err
	})
}

// peeringError maps the peering controller's sentinels onto HTTP codes;
// anything else is left to writeError.
func peeringError(err error) error {
	code := 0
	switch {
	case errors.Is(err, peering.ErrTokenExpired), errors.Is(err, peering.ErrTokenUsed):
		code = http.StatusForbidden
	case errors.Is(err, peering.ErrInvalidToken), errors.Is(err, peering.ErrInvalidPeerName),
		errors.Is(err, peering.ErrInvalidRequest), errors.Is(err, peering.ErrSameCluster):
		code = http.StatusBadRequest
	case errors.Is(err, peering.ErrPeeringNotFound):
		code = http.StatusNotFound
	case errors.Is(err, peering.ErrPeeringConflict), errors.Is(err, state.ErrPeeringRole):
		code = http.StatusConflict
	case errors.Is(err, peering.ErrPeerUnreachable):
		code = http.StatusBadGateway
	case errors.Is(err, peering.ErrUnavailable):
		code = http.StatusServiceUnavailable
	}
	if code == 0 {
		return err
	}
	return &httpError{code: code, msg: err.Error()}
}
