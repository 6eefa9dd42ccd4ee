// Package admission admits nodes to the cluster: the servers keep join
// token records and exchange a valid token for a node certificate; a new
// node uses a token to obtain its certificate, checking the server's CA
// against the token's pin before it sends the token; an admitted node
// renews its certificate over the internal mTLS port.
//
// Server side: Server (CreateToken, Tokens, Revoke for the HTTP API; the
// AdmissionService gRPC methods). Node side: Join, then Material's Save
// and Load keep what it got in the data directory.
package admission

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/peerd/peerd/agent/admission/pbadmission"
	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/ca"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/internal/jointoken"
	"github.com/peerd/peerd/internal/nodetls"
)

// Listener names under which refusals are reported.
const (
	ListenerAdmission = "admission"
)

// Refusal reasons of admission.
const (
	ReasonMalformed   = "malformed-token"
	ReasonUnknown     = "unknown-token"
	ReasonWrongSecret = "wrong-secret"
	ReasonRevoked     = "revoked-token"
	ReasonExpired     = "expired-token"
	ReasonWrongRole   = "wrong-role"
	ReasonBadRequest  = "bad-request"
	ReasonNoPeer      = "no-node-identity"
)

// DefaultTokenTTL is a join token's lifetime when none is asked for
// (kubeadm's default).
const DefaultTokenTTL = 24 * time.Hour

// MaxTokenTTL bounds a join token's lifetime.
const MaxTokenTTL = 365 * 24 * time.Hour

// Config configures a Server.
type Config struct {
	// Cluster is this server's cluster member. Required; must be a server.
	Cluster *catalog.Cluster
	// CA is the cluster CA (it signs node certificates). Required.
	CA *ca.CA
	// Datacenter is the cluster's datacenter. Required.
	Datacenter string
	// GossipKey returns the cluster's primary gossip key (base64), or ""
	// when gossip is not encrypted.
	GossipKey func() string
	// SecretsKey returns the servers' secrets key (seal.Key's String), sent
	// to joining servers only.
	SecretsKey func() string
	// NodeCertTTL is the lifetime of the node certificates it signs; 0 =
	// ca.DefaultNodeTTL.
	NodeCertTTL time.Duration
	// Refused is told of every refusal (listener, reason).
	Refused func(listener, reason string)
	Logger  *slog.Logger
	Now     func() time.Time
}

// Server is the servers' side of admission.
type Server struct {
	pbadmission.UnimplementedAdmissionServiceServer
	cfg Config
	log *slog.Logger
}

// NewServer validates cfg.
func NewServer(cfg Config) (*Server, error) {
	switch {
	case cfg.Cluster == nil || cfg.Cluster.Store() == nil:
		return nil, errors.New("admission: a server's cluster member is required")
	case cfg.CA == nil:
		return nil, errors.New("admission: the cluster CA is required")
	case cfg.Datacenter == "":
		return nil, errors.New("admission: the datacenter is required")
	}
	if cfg.GossipKey == nil {
		cfg.GossipKey = func() string { return "" }
	}
	if cfg.Refused == nil {
		cfg.Refused = func(string, string) {}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := cfg.Logger
	if l == nil {
		l = slog.Default()
	}
	return &Server{cfg: cfg, log: l.With("module", "admission")}, nil
}

// Register serves AdmissionService on g.
func (s *Server) Register(g *grpc.Server) { pbadmission.RegisterAdmissionServiceServer(g, s) }

// CreateToken makes a join token for role, valid for ttl (0 =
// DefaultTokenTTL), and records it in raft. The returned string is the
// secret: it is shown to the operator once and kept nowhere.
func (s *Server) CreateToken(ctx context.Context, role string, ttl time.Duration, description string) (string, state.JoinToken, error) {
	if role != jointoken.RoleServer && role != jointoken.RoleClient {
		return "", state.JoinToken{}, fmt.Errorf("role %q: want %q or %q", role, jointoken.RoleServer, jointoken.RoleClient)
	}
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if ttl < time.Minute || ttl > MaxTokenTTL {
		return "", state.JoinToken{}, fmt.Errorf("ttl %v: want between 1m and %v", ttl, MaxTokenTTL)
	}
	if len(description) > 256 {
		return "", state.JoinToken{}, fmt.Errorf("description: %d bytes, at most 256", len(description))
	}
	root, _, err := s.cfg.CA.ActiveRoot()
	if err != nil {
		return "", state.JoinToken{}, fmt.Errorf("create join token: %w", err)
	}
	rootCert, err := identity.ParseCertPEM(root.CertPEM)
	if err != nil {
		return "", state.JoinToken{}, fmt.Errorf("create join token: active root: %w", err)
	}
	var servers []string
	for _, m := range s.cfg.Cluster.Servers() {
		if m.Meta.GRPCTLSAddr != "" {
			servers = append(servers, m.Meta.GRPCTLSAddr)
		}
	}
	if len(servers) > jointoken.MaxServers {
		servers = servers[:jointoken.MaxServers]
	}
	if len(servers) == 0 {
		return "", state.JoinToken{}, errors.New("create join token: no server advertises a TLS gRPC address for joining nodes to reach")
	}
	now := s.cfg.Now()
	tok, err := jointoken.New(role, s.cfg.Datacenter, jointoken.Pin(rootCert), servers, s.cfg.GossipKey(), now, ttl)
	if err != nil {
		return "", state.JoinToken{}, fmt.Errorf("create join token: %w", err)
	}
	r := tok.Record(description, now)
	rec := row(r)
	res, err := s.cfg.Cluster.Apply(ctx, &catalog.Command{Type: catalog.CmdJoinToken, JoinToken: &state.JoinTokenRequest{Token: &rec}})
	if err != nil {
		return "", state.JoinToken{}, fmt.Errorf("record join token: %w", err)
	}
	rec.CreateIndex, rec.ModifyIndex = res.Index, res.Index
	s.log.Info("join token created", "id", rec.ID, "role", role, "expires", rec.ExpiresAt)
	return tok.String(), rec, nil
}

// Tokens lists the join token records (no secrets: there are none to list).
func (s *Server) Tokens() ([]state.JoinToken, error) {
	_, list, err := s.cfg.Cluster.Store().JoinTokens(nil)
	return list, err
}

// ErrNoToken is a revocation of a token ID this cluster does not know.
var ErrNoToken = errors.New("no such join token")

// Revoke revokes a join token: nodes it admitted keep their certificates
// (revoke those by removing the node), but it admits no one more.
func (s *Server) Revoke(ctx context.Context, id string) error {
	rec := s.cfg.Cluster.Store().JoinToken(id)
	if rec == nil {
		return fmt.Errorf("%w: %q (list them with `peerctl join-token list`)", ErrNoToken, id)
	}
	if !rec.RevokedAt.IsZero() {
		return nil
	}
	rec.RevokedAt = s.cfg.Now().UTC().Truncate(time.Second)
	if _, err := s.cfg.Cluster.Apply(ctx, &catalog.Command{Type: catalog.CmdJoinToken, JoinToken: &state.JoinTokenRequest{Token: rec}}); err != nil {
		return fmt.Errorf("revoke join token %s: %w", id, err)
	}
	s.log.Info("join token revoked", "id", id)
	return nil
}

// Roots implements AdmissionService.
func (s *Server) Roots(context.Context, *pbadmission.RootsRequest) (*pbadmission.RootsResponse, error) {
	_, pems, err := s.cfg.CA.ActiveRoot()
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &pbadmission.RootsResponse{RootPems: pems}, nil
}

// Join implements AdmissionService: a valid token and a public key in, a
// node certificate out.
func (s *Server) Join(ctx context.Context, req *pbadmission.JoinRequest) (*pbadmission.JoinResponse, error) {
	tok, err := jointoken.Parse(req.GetToken())
	if err != nil {
		return nil, s.refuse(codes.InvalidArgument, ReasonMalformed, "", req.GetNode(), err)
	}
	if req.GetDatacenter() != s.cfg.Datacenter {
		return nil, s.refuse(codes.InvalidArgument, ReasonBadRequest, tok.ID, req.GetNode(),
			fmt.Errorf("datacenter %q: this cluster is %q", req.GetDatacenter(), s.cfg.Datacenter))
	}
	var rec *jointoken.Record
	if r := s.cfg.Cluster.Store().JoinToken(tok.ID); r != nil {
		rec = &jointoken.Record{ID: r.ID, SecretHash: r.SecretHash, Role: r.Role, Description: r.Description,
			CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, RevokedAt: r.RevokedAt}
	}
	if err := jointoken.Check(tok, rec, req.GetRole(), s.cfg.Now()); err != nil {
		return nil, s.refuse(codes.PermissionDenied, checkReason(err), tok.ID, req.GetNode(), err)
	}
	pub, err := parsePublicKey(req.GetPublicKeyPem())
	if err != nil {
		return nil, s.refuse(codes.InvalidArgument, ReasonBadRequest, tok.ID, req.GetNode(), err)
	}
	leaf, pems, err := s.sign(ctx, req.GetRole(), req.GetNode(), pub)
	if err != nil {
		return nil, err
	}
	if r := s.cfg.Cluster.Store().JoinToken(tok.ID); r != nil {
		r.Uses++
		if _, err := s.cfg.Cluster.Apply(ctx, &catalog.Command{Type: catalog.CmdJoinToken, JoinToken: &state.JoinTokenRequest{Token: r}}); err != nil {
			s.log.Warn("count a join token's use", "id", tok.ID, "err", err)
		}
	}
	var gossip []string
	for _, m := range s.cfg.Cluster.Servers() {
		gossip = append(gossip, net.JoinHostPort(m.Addr, strconv.Itoa(m.Port)))
	}
	s.log.Info("node admitted", "node", req.GetNode(), "role", req.GetRole(), "token", tok.ID)
	resp := &pbadmission.JoinResponse{ChainPem: leaf, RootPems: pems, GossipKey: s.cfg.GossipKey(), GossipAddrs: gossip}
	if req.GetRole() == identity.RoleServer && s.cfg.SecretsKey != nil {
		resp.SecretsKey = s.cfg.SecretsKey()
	}
	return resp, nil
}

// Renew implements AdmissionService on the internal mTLS port: the caller's
// verified node identity is renewed, never another.
func (s *Server) Renew(ctx context.Context, req *pbadmission.RenewRequest) (*pbadmission.RenewResponse, error) {
	peer, ok := nodetls.PeerFrom(ctx)
	if !ok {
		return nil, s.refuse(codes.PermissionDenied, ReasonNoPeer, "", "",
			errors.New("renewal needs the node's current certificate: call it on the internal mTLS port"))
	}
	// The interceptor checked revocation on this server's state; a renewal
	// outlives it, so check again once caught up with the leader.
	if revoked, err := s.cfg.Cluster.CallerRevoked(ctx); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	} else if revoked {
		return nil, s.refuse(codes.PermissionDenied, "revoked-node", "", peer.Node, fmt.Errorf("the certificate of node %s was revoked", peer.Node))
	}
	pub, err := parsePublicKey(req.GetPublicKeyPem())
	if err != nil {
		return nil, s.refuse(codes.InvalidArgument, ReasonBadRequest, "", peer.Node, err)
	}
	leaf, pems, err := s.sign(ctx, peer.Role, peer.Node, pub)
	if err != nil {
		return nil, err
	}
	s.log.Info("node certificate renewed", "node", peer.Node, "role", peer.Role)
	return &pbadmission.RenewResponse{ChainPem: leaf, RootPems: pems}, nil
}

// SignAPI implements AdmissionService on the internal mTLS port: the
// serving certificate of the caller's own HTTPS API, named for the
// caller's verified node identity, never another's.
func (s *Server) SignAPI(ctx context.Context, req *pbadmission.SignAPIRequest) (*pbadmission.SignAPIResponse, error) {
	peer, ok := nodetls.PeerFrom(ctx)
	if !ok {
		return nil, s.refuse(codes.PermissionDenied, ReasonNoPeer, "", "",
			errors.New("an API certificate needs the node's certificate: call it on the internal mTLS port"))
	}
	if revoked, err := s.cfg.Cluster.CallerRevoked(ctx); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	} else if revoked {
		return nil, s.refuse(codes.PermissionDenied, "revoked-node", "", peer.Node, fmt.Errorf("the certificate of node %s was revoked", peer.Node))
	}
	pub, err := parsePublicKey(req.GetPublicKeyPem())
	if err != nil {
		return nil, s.refuse(codes.InvalidArgument, ReasonBadRequest, "", peer.Node, err)
	}
	td, err := s.cfg.CA.TrustDomain()
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	a := identity.Agent{TrustDomain: td, Role: peer.Role, Datacenter: s.cfg.Datacenter, Node: peer.Node}
	leaf, err := s.cfg.CA.SignAPI(ctx, ca.APIRequest{PublicKey: pub, Agent: a, TTL: s.cfg.NodeCertTTL})
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	s.log.Info("HTTPS API certificate signed", "node", peer.Node)
	return &pbadmission.SignAPIResponse{ChainPem: leaf.ChainPEM}, nil
}

func (s *Server) sign(ctx context.Context, role, node string, pub any) (string, []string, error) {
	td, err := s.cfg.CA.TrustDomain()
	if err != nil {
		return "", nil, status.Error(codes.Unavailable, err.Error())
	}
	a := identity.Agent{TrustDomain: td, Role: role, Datacenter: s.cfg.Datacenter, Node: node}
	if _, err := a.ID(); err != nil {
		return "", nil, s.refuse(codes.InvalidArgument, ReasonBadRequest, "", node, err)
	}
	leaf, err := s.cfg.CA.SignNode(ctx, ca.NodeRequest{PublicKey: pub, Agent: a, TTL: s.cfg.NodeCertTTL})
	if err != nil {
		return "", nil, status.Error(codes.Internal, err.Error())
	}
	_, pems, err := s.cfg.CA.ActiveRoot()
	if err != nil {
		return "", nil, status.Error(codes.Unavailable, err.Error())
	}
	return leaf.ChainPEM, pems, nil
}

func (s *Server) refuse(code codes.Code, reason, tokenID, node string, err error) error {
	s.cfg.Refused(ListenerAdmission, reason)
	s.log.Warn("admission refused", "reason", reason, "token", tokenID, "node", node, "err", err)
	return status.Error(code, err.Error())
}

func checkReason(err error) string {
	switch {
	case errors.Is(err, jointoken.ErrUnknown):
		return ReasonUnknown
	case errors.Is(err, jointoken.ErrWrongSecret):
		return ReasonWrongSecret
	case errors.Is(err, jointoken.ErrRevoked):
		return ReasonRevoked
	case errors.Is(err, jointoken.ErrExpired):
		return ReasonExpired
	case errors.Is(err, jointoken.ErrWrongRole):
		return ReasonWrongRole
	}
	return ReasonBadRequest
}
