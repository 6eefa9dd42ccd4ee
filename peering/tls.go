package peering

import (
	"crypto/tls"
	"fmt"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/internal/identity"
)

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
	chain := [][]byte{leaf.Raw}
	if root.CrossSignedPEM != "" {
		cross, err := identity.ParseCertPEM(root.CrossSignedPEM)
		if err != nil {
			return nil, fmt.Errorf("peering server certificate: cross-signed root: %w", err)
		}
		chain = append(chain, cross.Raw)
	}
	c.cert = &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}
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
		// Dialers may present their peering certificate; it is checked
		// per peering (binding.go), against roots TLS cannot know here.
		// None is required: a Consul dialer presents none.
		ClientAuth: tls.RequestClientCert,
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
