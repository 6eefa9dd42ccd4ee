// Package nodetls is a node's TLS identity inside its cluster, as every
// internal channel uses it: raft, the internal gRPC port, node-to-node HTTP
// and the terminator's node hop.
//
// A Source holds the node certificate (spiffe://<td>/agent/<role>/dc/<dc>/
// node/<name>, see identity.Agent), its key and the cluster's roots. The
// configs it makes always verify the other side mutually: a server config
// requires a client certificate, a client config verifies the server's,
// both against the cluster's roots (all of them, so certificates of the
// previous root keep working through a CA rotation's overlap and stop once
// the roots are updated without it), both require an agent ID of this
// cluster's trust domain and datacenter, and each names the roles it
// admits, so a client certificate can never act as a server.
//
// Update swaps the material (renewal, rotation) under live configs: new
// handshakes use it, established connections are not cut.
//
// Every handshake refused by verification is reported to Config.Refused
// with the listener's name and a short reason (for the caller's
// peerd_security_refusals_total counter and log); the TLS error the peer
// sees says the same.
//
// The package is a leaf: it imports internal/identity and nothing else of
// peerd's.
package nodetls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/internal/identity"
)

// Refusal reasons passed to Config.Refused.
const (
	ReasonNoCertificate  = "no-certificate"
	ReasonUntrusted      = "untrusted"
	ReasonNotAgent       = "not-an-agent"
	ReasonForeignCluster = "foreign-cluster"
	ReasonRole           = "role-not-allowed"
	ReasonRevoked        = "revoked-node"
)

// ErrRefused is wrapped by every verification failure.
var ErrRefused = errors.New("node certificate refused")

// Config configures a Source.
type Config struct {
	// CertPEM is the node certificate, optionally followed by the chain to
	// present with it (a cross-signed root during a rotation).
	CertPEM string
	// KeyPEM is the node certificate's private key.
	KeyPEM string
	// RootPEMs are the cluster's trust bundle: every root whose
	// certificates are accepted.
	RootPEMs []string
	// Refused, when set, is told of every refused handshake.
	Refused func(listener, reason string)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Source is a node's certificate and its cluster's roots. It is safe for
// concurrent use.
type Source struct {
	refused func(listener, reason string)
	now     func() time.Time

	// revoked, when set, names revoked node certificates (SetRevoked).
	revoked atomic.Pointer[func(identity.Agent, *x509.Certificate) bool]

	mu    sync.RWMutex
	self  identity.Agent
	cert  *tls.Certificate
	leaf  *x509.Certificate
	roots *x509.CertPool
}

// New parses cfg's material. The certificate must name an agent and chain
// to one of the roots.
func New(cfg Config) (*Source, error) {
	s := &Source{refused: cfg.Refused, now: cfg.Now}
	if s.now == nil {
		s.now = time.Now
	}
	if s.refused == nil {
		s.refused = func(string, string) {}
	}
	if err := s.Update(cfg.CertPEM, cfg.KeyPEM, cfg.RootPEMs); err != nil {
		return nil, err
	}
	return s, nil
}

// Update replaces the node certificate and the roots (both at once, so they
// stay consistent). It fails, keeping the old material, if the new
// certificate does not verify against the new roots or names another node.
func (s *Source) Update(certPEM, keyPEM string, rootPEMs []string) error {
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		return fmt.Errorf("node certificate and key: %w", err)
	}
	roots, err := identity.Pool(rootPEMs...)
	if err != nil {
		return fmt.Errorf("cluster roots: %w", err)
	}
	chain, err := parseChain(pair.Certificate)
	if err != nil {
		return fmt.Errorf("node certificate: %w", err)
	}
	id, err := identity.VerifyLeaf(chain, roots, s.now(), x509.ExtKeyUsageAny)
	if err != nil {
		return fmt.Errorf("node certificate does not verify against the cluster roots: %w", err)
	}
	self, err := identity.ParseAgentID(id)
	if err != nil {
		return fmt.Errorf("node certificate: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cert != nil && (self.Node != s.self.Node || self.TrustDomain != s.self.TrustDomain) {
		return fmt.Errorf("node certificate names %s, but this node is %s", self, s.self)
	}
	pair.Leaf = chain[0]
	s.self, s.cert, s.leaf, s.roots = self, &pair, chain[0], roots
	return nil
}

// SetRevoked installs the check of revoked node certificates, called on
// every handshake once the peer's chain verified (the cluster's revocation
// list lives in its state, which exists only after the Source).
func (s *Source) SetRevoked(fn func(identity.Agent, *x509.Certificate) bool) {
	s.revoked.Store(&fn)
}

// Self is the identity the node certificate names.
func (s *Source) Self() identity.Agent {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.self
}

// NotAfter is when the node certificate expires.
func (s *Source) NotAfter() time.Time {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.leaf.NotAfter
}

// Certificate is the node certificate with its key, for presenting on
// connections this package's configs do not make (the terminator's node
// hop).
func (s *Source) Certificate() *tls.Certificate {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cert
}

// Leaf is the node certificate, parsed.
func (s *Source) Leaf() *x509.Certificate {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.leaf
}

// Roots is the current root pool.
func (s *Source) Roots() *x509.CertPool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.roots
}

func (s *Source) current() (*tls.Certificate, *x509.CertPool, identity.Agent) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cert, s.roots, s.self
}

// ServerConfig is the config of a listener named listener that admits
// agents of the given roles: it requires a client certificate and verifies
// it as Verify does.
func (s *Source) ServerConfig(listener string, roles ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Asked for, and required by VerifyConnection, which crypto/tls
		// calls with no certificate too: so a missing one is refused with a
		// reason like every other refusal.
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, _, _ := s.current()
			return c, nil
		},
		// A resumed session would skip VerifyPeerCertificate: no tickets,
		// and the check in VerifyConnection, which runs on every handshake.
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := s.verify(listener, rawChain(cs), x509.ExtKeyUsageClientAuth, roles)
			return err
		},
	}
}

// ClientConfig is the config for dialing another node's listener named
// listener, which must present a certificate of one of roles. Host names
// are not checked: the SPIFFE ID is what names a node.
func (s *Source) ClientConfig(listener string, roles ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The chain is verified below, against the cluster's roots and
		// the agent SPIFFE ID instead of a host name.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, _, _ := s.current()
			return c, nil
		},
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := s.verify(listener, rawChain(cs), x509.ExtKeyUsageServerAuth, roles)
			return err
		},
	}
}

// Verify checks a peer's certificate chain (leaf first, as TLS sends it):
// it must chain to the cluster's roots for usage, name an agent of this
// node's trust domain and datacenter, and have one of roles. A refusal is
// reported to Config.Refused under listener and wraps ErrRefused.
func (s *Source) Verify(listener string, raw [][]byte, usage x509.ExtKeyUsage, roles ...string) (identity.Agent, error) {
	return s.verify(listener, raw, usage, roles)
}

func (s *Source) verify(listener string, raw [][]byte, usage x509.ExtKeyUsage, roles []string) (identity.Agent, error) {
	a, reason, err := s.check(raw, usage, roles)
	if err != nil {
		s.refused(listener, reason)
		return identity.Agent{}, fmt.Errorf("%s: %w: %w", listener, ErrRefused, err)
	}
	return a, nil
}

func (s *Source) check(raw [][]byte, usage x509.ExtKeyUsage, roles []string) (identity.Agent, string, error) {
	if len(raw) == 0 {
		return identity.Agent{}, ReasonNoCertificate, errors.New("no certificate presented: every internal connection needs a node certificate (join the node with a join token)")
	}
	chain, err := parseChain(raw)
	if err != nil {
		return identity.Agent{}, ReasonUntrusted, err
	}
	_, roots, self := s.current()
	id, err := identity.VerifyLeaf(chain, roots, s.now(), usage)
	if err != nil {
		return identity.Agent{}, ReasonUntrusted, fmt.Errorf("certificate not issued by this cluster's CA: %w", err)
	}
	a, err := identity.ParseAgentID(id)
	if err != nil {
		return identity.Agent{}, ReasonNotAgent, fmt.Errorf("certificate is not a node certificate: %w", err)
	}
	if a.TrustDomain != self.TrustDomain || a.Datacenter != self.Datacenter {
		return identity.Agent{}, ReasonForeignCluster, fmt.Errorf("%s is not a node of this cluster (%s, datacenter %s)", id, self.TrustDomain.Name(), self.Datacenter)
	}
	if !slices.Contains(roles, a.Role) {
		return identity.Agent{}, ReasonRole, fmt.Errorf("%s is a %s; only %v may connect here", id, a.Role, roles)
	}
	if fn := s.revoked.Load(); fn != nil && (*fn)(a, chain[0]) {
		return identity.Agent{}, ReasonRevoked, fmt.Errorf("the certificate of node %s was revoked", a.Node)
	}
	return a, "", nil
}

// rawChain is the peer's chain as it was sent.
func rawChain(cs tls.ConnectionState) [][]byte {
	raw := make([][]byte, 0, len(cs.PeerCertificates))
	for _, c := range cs.PeerCertificates {
		raw = append(raw, c.Raw)
	}
	return raw
}

func parseChain(raw [][]byte) ([]*x509.Certificate, error) {
	chain := make([]*x509.Certificate, 0, len(raw))
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certificate %d does not parse: %w", i, err)
		}
		chain = append(chain, c)
	}
	return chain, nil
}

// PeerAgent is the agent identity of a connection's peer, read from its
// verified leaf. It is for connections made with this package's configs,
// whose handshake already verified the chain.
func PeerAgent(cs tls.ConnectionState) (identity.Agent, error) {
	if len(cs.PeerCertificates) == 0 {
		return identity.Agent{}, fmt.Errorf("%w: no peer certificate", ErrRefused)
	}
	leaf := cs.PeerCertificates[0]
	if len(leaf.URIs) != 1 {
		return identity.Agent{}, fmt.Errorf("%w: peer certificate has %d URI SANs", ErrRefused, len(leaf.URIs))
	}
	id, err := spiffeid.FromURI(leaf.URIs[0])
	if err != nil {
		return identity.Agent{}, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return identity.ParseAgentID(id)
}

type peerKey struct{}

// WithPeer returns ctx carrying a verified peer identity (for handlers
// behind a listener that verified it).
func WithPeer(ctx context.Context, a identity.Agent) context.Context {
	return context.WithValue(ctx, peerKey{}, a)
}

// PeerFrom returns the identity WithPeer stored.
func PeerFrom(ctx context.Context) (identity.Agent, bool) {
	a, ok := ctx.Value(peerKey{}).(identity.Agent)
	return a, ok
}
