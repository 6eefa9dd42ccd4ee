package ca

import (
	"context"
	"crypto"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/internal/identity"
)

// APIRequest asks for the serving certificate of a node's HTTPS API.
type APIRequest struct {
	// PublicKey is the listener's key (ECDSA P-256).
	PublicKey crypto.PublicKey
	// Agent is the node the certificate is for, of this cluster's trust
	// domain; the caller has verified it (the node's own mTLS identity).
	Agent identity.Agent
	// TTL is the lifetime; 0 or above DefaultNodeTTL gives DefaultNodeTTL.
	TTL time.Duration
}

// SignAPI signs the HTTPS API certificate of a node with the active root:
// see SignAPIWith.
func (c *CA) SignAPI(ctx context.Context, req APIRequest) (SignedLeaf, error) {
	root, _, err := c.ActiveRoot()
	if err != nil {
		return SignedLeaf{}, fmt.Errorf("sign API certificate for %s: %w", req.Agent, err)
	}
	chain, err := SignAPIWith(root, req, c.now)
	if err != nil {
		return SignedLeaf{}, err
	}
	return SignedLeaf{ChainPEM: chain + root.CrossSignedPEM, RootID: root.ID}, nil
}

// SignAPIWith signs a serving certificate for the HTTPS API of node
// req.Agent with root: server authentication only, no SPIFFE ID (it is
// no identity inside the mesh), and the DNS names identity.APINames
// gives. Those are the only names a cluster root may vouch for (its name
// constraints admit the trust domain and names below it, no IP address),
// so clients verify it with -tls-server-name.
func SignAPIWith(root identity.Root, req APIRequest, now func() time.Time) (string, error) {
	td, err := spiffeid.TrustDomainFromString(root.TrustDomain)
	if err != nil {
		return "", fmt.Errorf("sign API certificate: trust domain of the root: %w", err)
	}
	if req.Agent.TrustDomain != td {
		return "", fmt.Errorf("sign API certificate for %s: not of trust domain %s: %w", req.Agent, td.Name(), ErrRefused)
	}
	if _, err := req.Agent.ID(); err != nil {
		return "", fmt.Errorf("sign API certificate: %v: %w", err, ErrRefused)
	}
	ttl := req.TTL
	if ttl <= 0 || ttl > DefaultNodeTTL {
		ttl = DefaultNodeTTL
	}
	leaf, err := identity.CA{Now: now}.SignLeaf(root, req.PublicKey, identity.LeafRequest{DNSNames: identity.APINames(req.Agent), TTL: ttl, Server: true})
	if err != nil {
		return "", fmt.Errorf("sign API certificate for %s: %w", req.Agent, err)
	}
	return leaf, nil
}
