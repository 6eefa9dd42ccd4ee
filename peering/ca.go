package peering

import (
	"cmp"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/peering/pbpeering"
)

// metaClusterID is the catalog meta key of the cluster's ID, chosen once by
// the first leader; the trust domain is derived from it.
const metaClusterID = "cluster-id"

// ErrNoCA means the cluster's CA does not exist yet: no leader has been
// elected since the cluster started. Retry shortly.
var ErrNoCA = errors.New("the cluster CA is not initialised yet (no leader so far)")

// ensureCA makes sure the cluster has an ID and an active CA root. It runs
// on the leader; every write is idempotent (the cluster ID is set only if
// absent, the root only if there is none).
func (s *Server) ensureCA(ctx context.Context) error {
	st := s.cfg.Cluster.Store()
	if st.Meta(metaClusterID) == "" {
		_, err := s.cfg.Cluster.Apply(ctx, &catalog.Command{Type: catalog.CmdMetaSet, MetaSet: &catalog.MetaSetRequest{
			Key: metaClusterID, Value: uuid.NewString(), OnlyIfAbsent: true,
		}})
		if err != nil {
			return fmt.Errorf("set cluster ID: %w", err)
		}
	}
	td, err := s.trustDomain()
	if err != nil {
		return err
	}
	_, roots, err := st.CARoots(nil)
	if err != nil || len(roots) > 0 {
		return err
	}
	root, err := identity.CA{Now: s.cfg.Now}.NewRoot(td)
	if err != nil {
		return fmt.Errorf("create CA root: %w", err)
	}
	_, err = s.cfg.Cluster.Apply(ctx, &catalog.Command{Type: catalog.CmdCARoots, CARoots: &catalog.CARootsRequest{
		Roots: []*catalog.CARoot{{ID: root.ID, CertPEM: root.CertPEM, KeyPEM: root.KeyPEM, TrustDomain: root.TrustDomain, Active: true}},
	}})
	if err != nil {
		return fmt.Errorf("store CA root: %w", err)
	}
	s.log.Info("created the cluster CA", "trust_domain", td.Name(), "root", root.ID)
	return nil
}

// caLoop keeps trying ensureCA while this server leads.
func (s *Server) caLoop(ctx context.Context) {
	for {
		err := s.ensureCA(ctx)
		if err == nil {
			return
		}
		s.log.Warn("initialise CA; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// trustDomain returns this cluster's trust domain, "<cluster-id>.peerd".
func (s *Server) trustDomain() (spiffeid.TrustDomain, error) {
	st := s.cfg.Cluster.Store()
	if st == nil {
		return spiffeid.TrustDomain{}, errors.New("trust domain: only servers hold the cluster state")
	}
	id := st.Meta(metaClusterID)
	if id == "" {
		return spiffeid.TrustDomain{}, ErrNoCA
	}
	td, err := identity.TrustDomain(id)
	if err != nil {
		return spiffeid.TrustDomain{}, fmt.Errorf("trust domain of cluster %q: %w", id, err)
	}
	return td, nil
}

// activeRoot returns the active CA root and every root's PEM (the active
// one first), as peers are told to trust them.
func (s *Server) activeRoot() (identity.Root, []string, error) {
	_, roots, err := s.cfg.Cluster.Store().CARoots(nil)
	if err != nil {
		return identity.Root{}, nil, err
	}
	if len(roots) == 0 || !roots[0].Active {
		return identity.Root{}, nil, ErrNoCA
	}
	var pems []string
	for _, r := range roots {
		pems = append(pems, r.CertPEM)
	}
	r := roots[0]
	return identity.Root{ID: r.ID, CertPEM: r.CertPEM, KeyPEM: r.KeyPEM, TrustDomain: r.TrustDomain, CrossSignedPEM: r.CrossSignedPEM}, pems, nil
}

// LeafRequest asks the cluster CA for a leaf certificate (see SignLeaf).
type LeafRequest struct {
	// PublicKey is the leaf's key: ECDSA P-256.
	PublicKey crypto.PublicKey
	// ID is the SPIFFE ID; it must be in this cluster's trust domain.
	ID       spiffeid.ID
	DNSNames []string
	// TTL is the requested lifetime; 0 = the CA's default.
	TTL            time.Duration
	Server, Client bool
}

// SignedLeaf is a signed leaf: the chain to present (the leaf, then its
// root's cross-signed certificate when there is one, so that peers that
// still trust only the previous root verify it) and the signing root.
type SignedLeaf struct {
	ChainPEM string
	RootID   string
}

// SignLeaf signs a leaf with the active CA root. Servers sign with the key
// they hold through raft; client nodes forward the request to a server.
//
// Like every call on the cluster-internal gRPC port, a forwarded request is
// not authenticated: any node of the cluster can obtain any identity of the
// cluster (see the README's limits).
func (s *Server) SignLeaf(ctx context.Context, req LeafRequest) (SignedLeaf, error) {
	if s.cfg.Cluster.Store() == nil {
		der, err := x509.MarshalPKIXPublicKey(req.PublicKey)
		if err != nil {
			return SignedLeaf{}, fmt.Errorf("sign leaf %s: encode public key: %w", req.ID, err)
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
			return SignedLeaf{}, fmt.Errorf("sign leaf %s: %w", req.ID, err)
		}
		return SignedLeaf{ChainPEM: resp.GetChainPem(), RootID: resp.GetRootId()}, nil
	}
	root, _, err := s.activeRoot()
	if err != nil {
		return SignedLeaf{}, fmt.Errorf("sign leaf %s: %w", req.ID, err)
	}
	leaf, err := identity.CA{Now: s.cfg.Now}.SignLeaf(root, req.PublicKey, identity.LeafRequest{
		ID: req.ID, DNSNames: req.DNSNames, TTL: req.TTL, Server: req.Server, Client: req.Client,
	})
	if err != nil {
		return SignedLeaf{}, fmt.Errorf("sign leaf %s: %w", req.ID, err)
	}
	return SignedLeaf{ChainPEM: leaf + root.CrossSignedPEM, RootID: root.ID}, nil
}

// RotateCA replaces the active root with a new one of the same trust
// domain, cross-signed by the current root. The previous root stays in the
// trust bundle (inactive) so that leaves it signed keep verifying until they
// are renewed; older inactive roots are dropped. It runs on the leader
// (other nodes forward the call).
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
	old, _, err := s.activeRoot()
	if err != nil {
		return "", fmt.Errorf("rotate CA: %w", err)
	}
	td, err := spiffeid.TrustDomainFromString(old.TrustDomain)
	if err != nil {
		return "", fmt.Errorf("rotate CA: trust domain of the active root: %w", err)
	}
	ca := identity.CA{Now: s.cfg.Now}
	next, err := ca.NewRoot(td)
	if err != nil {
		return "", fmt.Errorf("rotate CA: %w", err)
	}
	if next.CrossSignedPEM, err = ca.CrossSign(next, old); err != nil {
		return "", fmt.Errorf("rotate CA: %w", err)
	}
	_, err = s.cfg.Cluster.Apply(ctx, &catalog.Command{Type: catalog.CmdCARoots, CARoots: &catalog.CARootsRequest{
		Roots: []*catalog.CARoot{
			{ID: next.ID, CertPEM: next.CertPEM, KeyPEM: next.KeyPEM, TrustDomain: next.TrustDomain, CrossSignedPEM: next.CrossSignedPEM, Active: true},
			{ID: old.ID, CertPEM: old.CertPEM, KeyPEM: old.KeyPEM, TrustDomain: old.TrustDomain, CrossSignedPEM: old.CrossSignedPEM},
		},
	}})
	if err != nil {
		return "", fmt.Errorf("rotate CA: store the new root: %w", err)
	}
	s.log.Info("rotated the cluster CA", "trust_domain", td.Name(), "root", next.ID, "previous", old.ID)
	return next.ID, nil
}

// CARoots returns this cluster's CA roots without their keys, the active
// one first, for GET /v1/connect/ca/roots and the terminator's trust.
func (s *Server) CARoots() (trustDomain string, roots []*catalog.CARoot, err error) {
	st := s.cfg.Cluster.Store()
	if st == nil {
		return "", nil, errors.New("CA roots: only servers hold the cluster state")
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
