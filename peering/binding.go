package peering

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/identity"
)

// A stream secret is bound to the dialer's TLS identity when the dialer
// presents a client certificate at the secret exchange: peerd dialers
// present their own peering certificate (server.<dc>.peering.<td>, from
// their cluster CA) with their CA's root, and the acceptor records the
// trust domain and pins the root. Every stream opened with that secret (or
// with the secret rotated from it) must then present a certificate of the
// same trust domain that chains to a pinned root or to the trust bundle the
// peer replicated since (which follows its CA rotations). A dialer that
// presents no certificate at the exchange (a Consul dialer) gets an
// unbound secret: the secret alone opens the stream, as in Consul. The
// binding is decided by the exchange, which the establishment secret
// guards, never by a stream: a stolen stream secret cannot bind or unbind.

// errNoClientCert is a bound stream opened without a client certificate.
var errNoClientCert = errors.New("no client certificate presented")

// peerCertificates returns the certificates the caller presented on the
// gRPC connection of ctx (leaf first), or none.
func peerCertificates(ctx context.Context) []*x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil
	}
	return info.State.PeerCertificates
}

// peeringCertTrustDomain returns the trust domain a peering certificate
// names (its DNS SAN server.<dc>.peering.<td>).
func peeringCertTrustDomain(leaf *x509.Certificate) (string, error) {
	for _, name := range leaf.DNSNames {
		rest, ok := strings.CutPrefix(name, "server.")
		if !ok {
			continue
		}
		if _, td, ok := strings.Cut(rest, ".peering."); ok && td != "" {
			return td, nil
		}
	}
	return "", errors.New("the certificate names no peering server (server.<dc>.peering.<trust-domain>)")
}

// exchangeIdentity is the identity the certificates presented at a secret
// exchange bind the new stream secret to: nil when none were presented.
// The leaf must chain, through the others, to a self-signed CA certificate
// among them, which is pinned; its trust domain must not be ours.
func exchangeIdentity(certs []*x509.Certificate, ownTD string) (*state.StreamIdentity, error) {
	if len(certs) == 0 {
		return nil, nil
	}
	leaf := certs[0]
	td, err := peeringCertTrustDomain(leaf)
	if err != nil {
		return nil, err
	}
	if strings.EqualFold(td, ownTD) {
		return nil, fmt.Errorf("the certificate is of this cluster's trust domain %s", td)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	var pinned []string
	for _, c := range certs[1:] {
		if !c.IsCA {
			continue
		}
		if c.CheckSignatureFrom(c) == nil {
			roots.AddCert(c)
			pinned = append(pinned, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
		} else {
			inter.AddCert(c)
		}
	}
	if len(pinned) == 0 {
		return nil, errors.New("the certificate chain carries no CA root to pin")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("the certificate does not chain to the CA it presented: %w", err)
	}
	return &state.StreamIdentity{TrustDomain: td, RootPEMs: pinned}, nil
}

// verifyBinding checks the certificates presented on a stream against the
// identity its secret is bound to (nil: unbound, anything passes). bundle
// is the peer's replicated trust bundle, or nil.
func verifyBinding(id *state.StreamIdentity, certs []*x509.Certificate, bundle *state.PeeringTrustBundle) error {
	if id == nil {
		return nil
	}
	if len(certs) == 0 {
		return errNoClientCert
	}
	leaf := certs[0]
	td, err := peeringCertTrustDomain(leaf)
	if err != nil {
		return err
	}
	if !strings.EqualFold(td, id.TrustDomain) {
		return fmt.Errorf("the certificate is of trust domain %s, not the peer's %s", td, id.TrustDomain)
	}
	pems := id.RootPEMs
	if bundle != nil && strings.EqualFold(bundle.TrustDomain, id.TrustDomain) {
		pems = append(append([]string(nil), pems...), bundle.RootPEMs...)
	}
	roots, err := identity.Pool(pems...)
	if err != nil {
		return fmt.Errorf("the peer's pinned roots: %w", err)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("the certificate does not chain to the peer's roots: %w", err)
	}
	return nil
}

// clientCertificate is what this cluster presents when it dials a peer:
// its peering certificate, with the cross-signed root when there is one and
// the active root, so the acceptor can pin the root at the exchange.
func (s *Server) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	c, err := s.getCertificate(nil)
	if err != nil {
		return nil, err
	}
	root, _, err := s.activeRoot()
	if err != nil {
		return nil, fmt.Errorf("peering client certificate: %w", err)
	}
	rc, err := identity.ParseCertPEM(root.CertPEM)
	if err != nil {
		return nil, fmt.Errorf("peering client certificate: active root: %w", err)
	}
	out := *c
	out.Certificate = append(append([][]byte(nil), c.Certificate...), rc.Raw)
	return &out, nil
}

// peerTLSConfig is the TLS configuration this cluster dials a peer with:
// the peer's roots and server name, and this cluster's client certificate.
func (s *Server) peerTLSConfig(caPEMs []string, serverName string) (*tls.Config, error) {
	cfg, err := dialTLSConfig(caPEMs, serverName)
	if err != nil {
		return nil, err
	}
	cfg.GetClientCertificate = s.clientCertificate
	return cfg, nil
}
