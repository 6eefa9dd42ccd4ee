package peering

import (
	"cmp"
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/ca"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/peering/pbpeering"
)

// metaClusterID is the catalog meta key of the cluster's ID, chosen once by
// the first leader; the trust domain is derived from it.
const metaClusterID = "cluster-id"

// ErrNoCA means the cluster's CA does not exist yet: no leader has been
// elected since the cluster started. Retry shortly.
var ErrNoCA = ca.ErrNoCA

// LeafRequest asks the cluster CA for a leaf certificate (see SignLeaf).
type LeafRequest = ca.LeafRequest

// SignedLeaf is a signed leaf: the chain to present and the signing root.
type SignedLeaf = ca.SignedLeaf

// caStore keeps the cluster CA in the catalog: the cluster ID under
// metaClusterID, the roots in the CA roots table, both written through raft.
type caStore struct{ c *catalog.Cluster }

var _ ca.Store = caStore{}

func (cs caStore) ClusterID() string { return cs.c.Store().Meta(metaClusterID) }

func (cs caStore) SetClusterID(ctx context.Context, id string) error {
	_, err := cs.c.Apply(ctx, &catalog.Command{Type: catalog.CmdMetaSet, MetaSet: &state.MetaSetRequest{
		Key: metaClusterID, Value: id, OnlyIfAbsent: true,
	}})
	return err
}

func (cs caStore) Roots() ([]ca.Root, error) {
	_, roots, err := cs.c.Store().CARoots(nil)
	if err != nil {
		return nil, err
	}
	out := make([]ca.Root, 0, len(roots))
	for _, r := range roots {
		out = append(out, ca.Root{
			Root:   identity.Root{ID: r.ID, CertPEM: r.CertPEM, KeyPEM: r.KeyPEM, TrustDomain: r.TrustDomain, CrossSignedPEM: r.CrossSignedPEM},
			Active: r.Active,
		})
	}
	return out, nil
}

func (cs caStore) WriteRoots(ctx context.Context, roots []ca.Root) error {
	req := &state.CARootsRequest{}
	for _, r := range roots {
		req.Roots = append(req.Roots, &state.CARoot{
			ID: r.ID, CertPEM: r.CertPEM, KeyPEM: r.KeyPEM, TrustDomain: r.TrustDomain, CrossSignedPEM: r.CrossSignedPEM, Active: r.Active,
		})
	}
	_, err := cs.c.Apply(ctx, &catalog.Command{Type: catalog.CmdCARoots, CARoots: req})
	return err
}

// newCA is the cluster CA of this node: on servers over the catalog, on
// client nodes signing through a server.
func (s *Server) newCA() (*ca.CA, error) {
	cfg := ca.Config{Forward: s.forwardSignLeaf, Now: s.cfg.Now, MaxLeafTTL: s.cfg.LeafTTL, Seed: s.cfg.CASeed, Logger: s.log}
	if s.cfg.Cluster.Store() != nil {
		cfg.Store = caStore{s.cfg.Cluster}
	}
	return ca.New(cfg)
}

// CA returns the cluster CA this controller bootstraps on the leader. It
// signs on servers and forwards from client nodes; it is the terminator's
// Signer.
func (s *Server) CA() *ca.CA { return s.ca }

// trustDomain returns this cluster's trust domain, "<cluster-id>.peerd".
func (s *Server) trustDomain() (spiffeid.TrustDomain, error) { return s.ca.TrustDomain() }

// activeRoot returns the active CA root and every root's PEM (the active
// one first), as peers are told to trust them.
func (s *Server) activeRoot() (identity.Root, []string, error) { return s.ca.ActiveRoot() }

// SignLeaf signs a leaf with the active CA root. Servers sign with the key
// they hold through raft; client nodes forward the request to a server.
//
// The CA signs only service and mesh gateway identities of the cluster's
// trust domain, with no DNS SAN beyond the service's server names and a
// lifetime capped at Config.LeafTTL (refusals wrap ca.ErrRefused). Like
// every call on the cluster-internal gRPC port, a forwarded request is not
// authenticated: any node of the cluster can still obtain any such identity
// (see the README's limits).
func (s *Server) SignLeaf(ctx context.Context, req LeafRequest) (SignedLeaf, error) {
	return s.ca.Sign(ctx, req)
}

// forwardSignLeaf asks a server to sign req, for a client node's CA.
func (s *Server) forwardSignLeaf(ctx context.Context, req LeafRequest) (SignedLeaf, error) {
	der, err := x509.MarshalPKIXPublicKey(req.PublicKey)
	if err != nil {
		return SignedLeaf{}, fmt.Errorf("encode public key: %w", err)
	}
	var resp *pbpeering.SignLeafResponse
	err = s.forward(ctx, func(ctx context.Context, c pbpeering.PeeringServiceClient, opts ...grpc.CallOption) (err error) {
		resp, err = c.SignLeaf(ctx, &pbpeering.SignLeafRequest{
			PublicKey: der, SpiffeId: req.ID.String(), DnsNames: req.DNSNames,
			TtlSeconds: int64(req.TTL / time.Second), Server: req.Server, Client: req.Client,
		}, opts...)
		return err
	})
	if err != nil {
		return SignedLeaf{}, err
	}
	return SignedLeaf{ChainPEM: resp.GetChainPem(), RootID: resp.GetRootId()}, nil
}

// RotateCA replaces the active root with a new one of the same trust
// domain, cross-signed by the current root (see ca.CA.Rotate). It runs on
// the leader (other nodes forward the call).
func (s *Server) RotateCA(ctx context.Context) (string, error) {
	if !s.cfg.Cluster.IsLeader() {
		var resp *pbpeering.RotateCAResponse
		err := s.forward(ctx, func(ctx context.Context, c pbpeering.PeeringServiceClient, opts ...grpc.CallOption) (err error) {
			resp, err = c.RotateCA(ctx, &pbpeering.RotateCARequest{}, opts...)
			return err
		})
		if err != nil {
			return "", fmt.Errorf("rotate CA: %w", err)
		}
		return resp.GetRootId(), nil
	}
	return s.ca.Rotate(ctx)
}

// CARoots returns this cluster's CA roots without their keys, the active
// one first, for GET /v1/connect/ca/roots and the terminator's trust.
func (s *Server) CARoots() (trustDomain string, roots []*state.CARoot, err error) {
	st := s.cfg.Cluster.Store()
	if st == nil {
		return "", nil, fmt.Errorf("CA roots: %w", ca.ErrNoStore)
	}
	_, all, err := st.CARoots(nil)
	if err != nil {
		return "", nil, err
	}
	for _, r := range all {
		cp := *r
		cp.KeyPEM = ""
		roots = append(roots, &cp)
		trustDomain = cmp.Or(trustDomain, r.TrustDomain)
	}
	return trustDomain, roots, nil
}
