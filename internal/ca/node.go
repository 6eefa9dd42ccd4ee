package ca

import (
	"context"
	"crypto"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/internal/identity"
)

// DefaultNodeTTL is the lifetime of a node certificate; nodes renew at half.
const DefaultNodeTTL = 72 * time.Hour

// Seed is the CA the first server of a cluster creates before it accepts
// any connection: the cluster ID and the first root, which it uses to sign
// its own node certificate and, once it leads, writes into raft as the
// cluster's CA (Bootstrap takes it instead of making a new one).
type Seed struct {
	ClusterID string
	Root      identity.Root
}

// NewSeed makes a cluster ID and its first root.
func NewSeed(now func() time.Time) (Seed, error) {
	id := uuid.NewString()
	td, err := identity.TrustDomain(id)
	if err != nil {
		return Seed{}, err
	}
	root, err := identity.CA{Now: now}.NewRoot(td)
	if err != nil {
		return Seed{}, fmt.Errorf("create CA root: %w", err)
	}
	return Seed{ClusterID: id, Root: root}, nil
}

// NodeRequest asks for a node certificate.
type NodeRequest struct {
	// PublicKey is the node's key (ECDSA P-256); the private key never
	// leaves the node.
	PublicKey crypto.PublicKey
	// Agent is the identity to certify: role, datacenter and node name, of
	// this cluster's trust domain.
	Agent identity.Agent
	// TTL is the lifetime; 0 or above DefaultNodeTTL gives DefaultNodeTTL.
	TTL time.Duration
}

// SignNode signs a node certificate with the active root. Who may have
// which role is the caller's decision (admission, renewal); the CA checks
// only that the identity is an agent of this cluster's trust domain.
func (c *CA) SignNode(ctx context.Context, req NodeRequest) (SignedLeaf, error) {
	root, _, err := c.ActiveRoot()
	if err != nil {
		return SignedLeaf{}, fmt.Errorf("sign node certificate for %s: %w", req.Agent, err)
	}
	chain, err := SignNodeWith(root, req, c.now)
	if err != nil {
		return SignedLeaf{}, err
	}
	return SignedLeaf{ChainPEM: chain + root.CrossSignedPEM, RootID: root.ID}, nil
}

// SignNodeWith signs a node certificate with root: the seed's root on the
// first server before raft holds the CA, or the active root.
func SignNodeWith(root identity.Root, req NodeRequest, now func() time.Time) (string, error) {
	td, err := spiffeid.TrustDomainFromString(root.TrustDomain)
	if err != nil {
		return "", fmt.Errorf("sign node certificate: trust domain of the root: %w", err)
	}
	if req.Agent.TrustDomain != td {
		return "", fmt.Errorf("sign node certificate for %s: not of trust domain %s: %w", req.Agent, td.Name(), ErrRefused)
	}
	id, err := req.Agent.ID()
	if err != nil {
		return "", fmt.Errorf("sign node certificate: %v: %w", err, ErrRefused)
	}
	ttl := req.TTL
	if ttl <= 0 || ttl > DefaultNodeTTL {
		ttl = DefaultNodeTTL
	}
	leaf, err := identity.CA{Now: now}.SignLeaf(root, req.PublicKey, identity.LeafRequest{ID: id, TTL: ttl, Server: true, Client: true})
	if err != nil {
		return "", fmt.Errorf("sign node certificate for %s: %w", id, err)
	}
	return leaf, nil
}
