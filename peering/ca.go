package peering

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/internal/identity"
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

// serverCert issues and caches this server's peering TLS certificate (SAN
// server.<dc>.peering.<trust-domain>), signed locally with the CA key every
// server holds through raft, and reissues it at half its life or when the
// active root changes.
type serverCert struct {
	mu     sync.Mutex
	cert   *tls.Certificate
	rootID string
}

func (s *Server) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	root, _, err := s.activeRoot()
	if err != nil {
		return nil, fmt.Errorf("peering server certificate: %w", err)
	}
	c := &s.cert
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil && c.rootID == root.ID && !identity.NeedsRenewal(c.cert.Leaf, s.cfg.Now()) {
		return c.cert, nil
	}
	td, err := spiffeid.TrustDomainFromString(root.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("peering server certificate: %w", err)
	}
	key, _, err := identity.NewKey()
	if err != nil {
		return nil, fmt.Errorf("peering server certificate: %w", err)
	}
	certPEM, err := identity.CA{Now: s.cfg.Now}.SignLeaf(root, key.Public(), identity.LeafRequest{
		DNSNames: []string{identity.ServerName(s.datacenter(), td)}, Server: true, Client: true,
	})
	if err != nil {
		return nil, fmt.Errorf("peering server certificate: %w", err)
	}
	leaf, err := identity.ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("peering server certificate: %w", err)
	}
	c.cert = &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	c.rootID = root.ID
	return c.cert, nil
}

// ServerTLSConfig is the TLS configuration of the peering gRPC listener.
// Handshakes fail (and peers retry) until the cluster's CA exists.
func (s *Server) ServerTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: s.getCertificate,
		NextProtos:     []string{"h2"},
	}
}

// dialTLSConfig trusts a peer's CA roots and expects its server name.
func dialTLSConfig(caPEMs []string, serverName string) (*tls.Config, error) {
	pool, err := identity.Pool(caPEMs...)
	if err != nil {
		return nil, fmt.Errorf("peer CA: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: serverName}, nil
}
