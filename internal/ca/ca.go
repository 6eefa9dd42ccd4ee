package ca

import (
	"cmp"
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/internal/identity"
)

// Sentinel errors.
var (
	// ErrNoCA means the cluster's CA does not exist yet: no leader has been
	// elected since the cluster started. Retry shortly.
	ErrNoCA = errors.New("the cluster CA is not initialised yet (no leader so far)")
	// ErrNoStore means this node holds no cluster state (a client node):
	// ask a server.
	ErrNoStore = errors.New("only servers hold the cluster state")
)

// Root is a root as the cluster stores it: its certificate and key, and
// whether it is the active root, the one that signs new leaves.
type Root struct {
	identity.Root
	Active bool
}

// Store keeps the CA's state for the cluster. Reads are of this node's copy
// and must be cheap; writes return once they are applied (for raft: by the
// leader) and may be called concurrently with reads.
type Store interface {
	// ClusterID returns the cluster's ID, or "" until one is set.
	ClusterID() string
	// SetClusterID sets the cluster's ID unless it has one already.
	SetClusterID(ctx context.Context, id string) error
	// Roots returns every root with its key, the active one first.
	Roots() ([]Root, error)
	// WriteRoots replaces every stored root with roots.
	WriteRoots(ctx context.Context, roots []Root) error
}

// LeafRequest asks the cluster CA for a leaf certificate (see Sign).
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

// Config configures a CA.
type Config struct {
	// Store holds the cluster's CA state. nil on a node that holds no
	// cluster state (a client node): such a node signs through Forward and
	// cannot bootstrap, rotate or name its trust domain (ErrNoStore).
	Store Store
	// Forward signs a leaf on a node without a Store, by asking one that
	// has it. Required when Store is nil.
	Forward func(ctx context.Context, req LeafRequest) (SignedLeaf, error)
	// Now is the clock of the certificates; nil = time.Now.
	Now func() time.Time
	// MaxLeafTTL is the longest lifetime of a leaf this CA signs (the
	// agent's -leaf-ttl); longer requests get it. 0 = identity.DefaultLeafTTL
	// (72 hours).
	MaxLeafTTL time.Duration
	// Seed, when set, is the CA this server created before raft held one
	// (the first server of a cluster): Bootstrap writes its cluster ID and
	// root instead of making new ones.
	Seed *Seed
	// Logger receives the CA's events (a root created or rotated); nil =
	// slog.Default().
	Logger *slog.Logger
}

// CA is the cluster CA of one node. Its methods are safe for concurrent
// use if the Store and Forward are.
type CA struct {
	store   Store
	forward func(ctx context.Context, req LeafRequest) (SignedLeaf, error)
	now     func() time.Time
	maxTTL  time.Duration
	seed    *Seed
	log     *slog.Logger
}

// Validate reports a Config that cannot sign: one with neither a Store nor
// a Forward.
func (cfg Config) Validate() error {
	if cfg.Store == nil && cfg.Forward == nil {
		return errors.New("CA config: a Store or a Forward is required")
	}
	if cfg.MaxLeafTTL < 0 {
		return fmt.Errorf("CA config: MaxLeafTTL %v is negative", cfg.MaxLeafTTL)
	}
	return nil
}

// New returns the CA for cfg, once cfg is valid.
func New(cfg Config) (*CA, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &CA{store: cfg.Store, forward: cfg.Forward, now: cfg.Now, maxTTL: cmp.Or(cfg.MaxLeafTTL, identity.DefaultLeafTTL), seed: cfg.Seed, log: cfg.Logger}
	if c.log == nil {
		c.log = slog.Default()
	}
	return c, nil
}

// x509 is the CA's certificate mechanics with its clock.
func (c *CA) x509() identity.CA { return identity.CA{Now: c.now} }

// Bootstrap makes sure the cluster has an ID and an active root. It runs
// on the leader; every write is idempotent (the cluster ID is set only if
// absent, the root only if there is none).
func (c *CA) Bootstrap(ctx context.Context) error {
	if c.store == nil {
		return fmt.Errorf("bootstrap CA: %w", ErrNoStore)
	}
	if c.store.ClusterID() == "" {
		id := uuid.NewString()
		if c.seed != nil {
			id = c.seed.ClusterID
		}
		if err := c.store.SetClusterID(ctx, id); err != nil {
			return fmt.Errorf("set cluster ID: %w", err)
		}
	}
	td, err := c.TrustDomain()
	if err != nil {
		return err
	}
	roots, err := c.store.Roots()
	if err != nil || len(roots) > 0 {
		return err
	}
	var root identity.Root
	if c.seed != nil && c.seed.Root.TrustDomain == td.Name() {
		root = c.seed.Root
	} else if root, err = c.x509().NewRoot(td); err != nil {
		return fmt.Errorf("create CA root: %w", err)
	}
	if err := c.store.WriteRoots(ctx, []Root{{Root: root, Active: true}}); err != nil {
		return fmt.Errorf("store CA root: %w", err)
	}
	c.log.Info("created the cluster CA", "trust_domain", td.Name(), "root", root.ID)
	return nil
}

// KeepBootstrapping retries Bootstrap every second until it succeeds or ctx
// ends: the leader routine of the CA.
func (c *CA) KeepBootstrapping(ctx context.Context) {
	for {
		err := c.Bootstrap(ctx)
		if err == nil {
			return
		}
		c.log.Warn("initialise CA; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// TrustDomain returns this cluster's trust domain, "<cluster-id>.peerd".
func (c *CA) TrustDomain() (spiffeid.TrustDomain, error) {
	if c.store == nil {
		return spiffeid.TrustDomain{}, fmt.Errorf("trust domain: %w", ErrNoStore)
	}
	id := c.store.ClusterID()
	if id == "" {
		return spiffeid.TrustDomain{}, ErrNoCA
	}
	td, err := identity.TrustDomain(id)
	if err != nil {
		return spiffeid.TrustDomain{}, fmt.Errorf("trust domain of cluster %q: %w", id, err)
	}
	return td, nil
}

// ActiveRoot returns the active root, with its key, and every root's PEM
// (the active one first), as peers are told to trust them.
func (c *CA) ActiveRoot() (identity.Root, []string, error) {
	if c.store == nil {
		return identity.Root{}, nil, fmt.Errorf("active root: %w", ErrNoStore)
	}
	roots, err := c.store.Roots()
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
	return roots[0].Root, pems, nil
}

// Sign signs a leaf with the active root. A node with a Store signs with
// the key it holds, once the request passes the issuance rules (see
// checkRequest; a refusal wraps ErrRefused); one without forwards the
// request to a server, which applies them.
func (c *CA) Sign(ctx context.Context, req LeafRequest) (SignedLeaf, error) {
	if c.store == nil {
		leaf, err := c.forward(ctx, req)
		if err != nil {
			return SignedLeaf{}, fmt.Errorf("sign leaf %s: %w", req.ID, err)
		}
		return leaf, nil
	}
	root, _, err := c.ActiveRoot()
	if err != nil {
		return SignedLeaf{}, fmt.Errorf("sign leaf %s: %w", req.ID, err)
	}
	td, err := spiffeid.TrustDomainFromString(root.TrustDomain)
	if err != nil {
		return SignedLeaf{}, fmt.Errorf("sign leaf %s: trust domain of the active root: %w", req.ID, err)
	}
	ok, err := checkRequest(req, td, c.maxTTL)
	if err != nil {
		return SignedLeaf{}, fmt.Errorf("sign leaf %s: %w", req.ID, err)
	}
	leaf, err := c.x509().SignLeaf(root, ok.PublicKey, identity.LeafRequest{
		ID: ok.ID, DNSNames: ok.DNSNames, TTL: ok.TTL, Server: ok.Server, Client: ok.Client,
	})
	if err != nil {
		return SignedLeaf{}, fmt.Errorf("sign leaf %s: %w", req.ID, err)
	}
	return SignedLeaf{ChainPEM: leaf + root.CrossSignedPEM, RootID: root.ID}, nil
}

// SignLeaf is Sign's chain: it makes *CA the terminator's Signer.
func (c *CA) SignLeaf(ctx context.Context, req LeafRequest) (string, error) {
	leaf, err := c.Sign(ctx, req)
	return leaf.ChainPEM, err
}

// Rotate replaces the active root with a new one of the same trust domain,
// cross-signed by the current root. The previous root stays in the trust
// bundle (inactive) so that leaves it signed keep verifying until they are
// renewed; older inactive roots are dropped. It runs on the node that may
// write (the leader) and returns the new root's ID.
func (c *CA) Rotate(ctx context.Context) (string, error) {
	old, _, err := c.ActiveRoot()
	if err != nil {
		return "", fmt.Errorf("rotate CA: %w", err)
	}
	td, err := spiffeid.TrustDomainFromString(old.TrustDomain)
	if err != nil {
		return "", fmt.Errorf("rotate CA: trust domain of the active root: %w", err)
	}
	ca := c.x509()
	next, err := ca.NewRoot(td)
	if err != nil {
		return "", fmt.Errorf("rotate CA: %w", err)
	}
	if next.CrossSignedPEM, err = ca.CrossSign(next, old); err != nil {
		return "", fmt.Errorf("rotate CA: %w", err)
	}
	if err := c.store.WriteRoots(ctx, []Root{{Root: next, Active: true}, {Root: old}}); err != nil {
		return "", fmt.Errorf("rotate CA: store the new root: %w", err)
	}
	c.log.Info("rotated the cluster CA", "trust_domain", td.Name(), "root", next.ID, "previous", old.ID)
	return next.ID, nil
}
