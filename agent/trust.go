package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/agent/admission"
	"github.com/peerd/peerd/agent/admission/pbadmission"
	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/ca"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/internal/jointoken"
	"github.com/peerd/peerd/internal/nodetls"
	"github.com/peerd/peerd/internal/seal"
)

// trust is this node's identity inside its cluster: the node certificate
// source every internal channel uses and, on the first server until raft
// holds the CA, the seed CA it made.
type trust struct {
	source   *nodetls.Source
	material admission.Material
	// dir is where the material is kept ("" in dev mode: memory only).
	dir string
	// secrets seals the raft log and snapshots (servers only).
	secrets *seal.Key
	// checked is the certificate last found signed by the active root
	// (renewTrust's goroutine alone reads and writes it).
	checked *x509.Certificate
	// bootstrap is the trust bootstrap this first server started from:
	// its join tokens are recorded once it leads.
	bootstrap *admission.Bootstrap
}

// trustDir is where a node keeps its identity.
func trustDir(cfg *Config) string {
	if cfg.Dev {
		return ""
	}
	return filepath.Join(cfg.DataDir, "tls")
}

// setupTrust gives this node its certificate before it opens any
// listener: the one kept in the data directory; else one obtained with
// -join-token; else, on a server, a new cluster's: the first server makes
// the CA (a seed that raft adopts once this server leads) and signs its
// own certificate. Dev mode does the last in memory. A client without a
// certificate or a token cannot start.
func (a *Agent) setupTrust(ctx context.Context, refused func(listener, reason string)) (*trust, error) {
	cfg := &a.cfg
	role := identity.RoleClient
	if cfg.Server {
		role = identity.RoleServer
	}
	t := &trust{dir: trustDir(cfg)}
	var ok bool
	var err error
	if t.dir != "" {
		if t.material, ok, err = admission.Load(t.dir); err != nil {
			return nil, err
		}
	}
	token := cfg.JoinToken
	if token == "" && cfg.JoinTokenFile != "" {
		raw, err := os.ReadFile(cfg.JoinTokenFile)
		if err != nil {
			return nil, fmt.Errorf("join token file: %w", err)
		}
		token = strings.TrimSpace(string(raw))
	}
	if cfg.TrustBootstrap != "" {
		b, err := admission.LoadBootstrap(cfg.TrustBootstrap)
		if err != nil {
			return nil, err
		}
		if b.FirstNode == cfg.NodeName && cfg.Server {
			t.bootstrap = &b
		}
	}
	switch {
	case ok:
		if token != "" {
			a.log.Info("this node is admitted already; its join token is not used", "identity", admission.Path(t.dir))
		}
	case t.bootstrap != nil:
		if t.material, err = clusterIdentity(cfg, t.bootstrap.Seed, t.bootstrap.SecretsKey); err != nil {
			return nil, err
		}
		if cfg.Encrypt == "" {
			t.material.GossipKey = t.bootstrap.GossipKey
		}
		a.log.Info("first server: starting the cluster from the trust bootstrap", "file", cfg.TrustBootstrap, "trust_domain", t.bootstrap.Seed.Root.TrustDomain)
	case token != "":
		if t.material, err = joinRetrying(ctx, admission.JoinConfig{
			Token: token, Node: cfg.NodeName, Role: role, Datacenter: cfg.Datacenter, Logger: a.log,
		}); err != nil {
			return nil, err
		}
	case cfg.Server && (cfg.Dev || cfg.BootstrapExpect == 1):
		if t.material, err = newClusterIdentity(cfg); err != nil {
			return nil, err
		}
		a.log.Info("first server of a new cluster: created its CA", "trust_domain", t.material.Seed.Root.TrustDomain)
	case cfg.Server:
		return nil, errors.New("a server with cluster trust starts a new cluster only with -bootstrap-expect 1: " +
			"the first server makes the CA and bootstraps alone, every other server joins with a token from " +
			"`peerd join-token create -role server` (-join-token), and becomes a voter once stable; " +
			"for servers that start together make a -trust-bootstrap file with `peerd trust init`; " +
			"-internal-tls=false runs the internal channels in plaintext instead")
	default:
		return nil, errors.New("a client node needs a join token: run `peerd join-token create -role client` against a server, then start this node with -join-token <token> (or -join-token-file)")
	}
	if t.dir != "" {
		if err := t.material.Save(t.dir); err != nil {
			return nil, err
		}
	}
	if t.source, err = nodetls.New(nodetls.Config{CertPEM: t.material.CertPEM, KeyPEM: t.material.KeyPEM, RootPEMs: t.material.RootPEMs, Refused: refused}); err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	if cfg.Server {
		if t.material.SecretsKey == "" {
			return nil, fmt.Errorf("the node identity in %s has no secrets key for the raft log: this server was admitted with a client token; remove the file and join with a server token", admission.Path(t.dir))
		}
		if t.secrets, err = seal.Parse(t.material.SecretsKey); err != nil {
			return nil, fmt.Errorf("node identity: %w", err)
		}
	}
	self := t.source.Self()
	if self.Node != cfg.NodeName || self.Role != role || self.Datacenter != cfg.Datacenter {
		return nil, fmt.Errorf("the node certificate in %s names %s, but this node is the %s %q of datacenter %q: remove the file to join afresh",
			admission.Path(t.dir), self, role, cfg.NodeName, cfg.Datacenter)
	}
	if cfg.Encrypt == "" && t.material.GossipKey != "" {
		cfg.Encrypt = t.material.GossipKey
	}
	if len(cfg.RetryJoin) == 0 {
		cfg.RetryJoin = slices.Clone(t.material.GossipAddrs)
	}
	return t, nil
}

// newClusterIdentity makes a new cluster's CA and this server's
// certificate from it.
func newClusterIdentity(cfg *Config) (admission.Material, error) {
	seed, err := ca.NewSeed(nil)
	if err != nil {
		return admission.Material{}, err
	}
	secrets, err := seal.NewKey()
	if err != nil {
		return admission.Material{}, err
	}
	return clusterIdentity(cfg, seed, secrets.String())
}

// clusterIdentity is the first server's material: its certificate signed
// with the seed's root, and the seed and secrets key it starts raft with.
func clusterIdentity(cfg *Config, seed ca.Seed, secretsKey string) (admission.Material, error) {
	td, err := spiffeid.TrustDomainFromString(seed.Root.TrustDomain)
	if err != nil {
		return admission.Material{}, err
	}
	key, keyPEM, err := identity.NewKey()
	if err != nil {
		return admission.Material{}, err
	}
	self := identity.Agent{TrustDomain: td, Role: identity.RoleServer, Datacenter: cfg.Datacenter, Node: cfg.NodeName}
	cert, err := ca.SignNodeWith(seed.Root, ca.NodeRequest{PublicKey: key.Public(), Agent: self}, nil)
	if err != nil {
		return admission.Material{}, err
	}
	return admission.Material{CertPEM: cert, KeyPEM: keyPEM, RootPEMs: []string{seed.Root.CertPEM}, Seed: &seed,
		SecretsKey: secretsKey}, nil
}

// joinRetrying is admission.Join, retried for up to two minutes while the
// servers cannot admit yet (no leader, or the first server has not recorded
// its bootstrap tokens): nodes of one deployment start together. A server
// that fails the CA pin check, or a token that is malformed, is not
// retried.
func joinRetrying(ctx context.Context, cfg admission.JoinConfig) (admission.Material, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		m, err := admission.Join(ctx, cfg)
		if err == nil || errors.Is(err, jointoken.ErrPin) || errors.Is(err, jointoken.ErrMalformed) ||
			time.Now().After(deadline) || ctx.Err() != nil || !retryableJoin(err) {
			return m, err
		}
		cfg.Logger.Warn("join the cluster; retrying", "err", err)
		select {
		case <-ctx.Done():
			return m, err
		case <-time.After(2 * time.Second):
		}
	}
}

// retryableJoin: the servers could not answer, or do not know the token
// yet; a revoked, expired or wrong token stays so.
func retryableJoin(err error) bool {
	msg := err.Error()
	for _, final := range []string{"revoked", "expired", "does not match", "grants"} {
		if strings.Contains(msg, final) {
			return false
		}
	}
	return true
}

// recordBootstrapTokens is a leader routine of the first server: it records
// the join tokens its trust bootstrap was made with, once, so that the
// nodes started with them are admitted.
func (a *Agent) recordBootstrapTokens(b *admission.Bootstrap) func(context.Context) {
	return func(ctx context.Context) {
		for _, rec := range b.Tokens {
			if a.cluster.Store().JoinToken(rec.ID) != nil {
				continue
			}
			r := rec
			if _, err := a.cluster.Apply(ctx, &catalog.Command{Type: catalog.CmdJoinToken, JoinToken: &state.JoinTokenRequest{Token: &r}}); err != nil {
				a.log.Warn("record the trust bootstrap's join token; at the next leadership again", "id", rec.ID, "err", err)
				return
			}
			a.log.Info("recorded the trust bootstrap's join token", "id", rec.ID, "role", rec.Role)
		}
	}
}

// renewTrust keeps the node certificate and roots current: the roots
// follow the cluster's CA roots (a rotation), and the certificate is
// renewed at half its life or when the active root changes. Servers sign
// their own; client nodes ask a server over the internal mTLS port. Once
// raft holds the CA the first server's seed is dropped from disk.
func (a *Agent) renewTrust(ctx context.Context, t *trust) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := a.refreshTrust(ctx, t); err != nil {
			a.log.Warn("renew the node certificate; retrying", "err", err)
		}
	}
}

func (a *Agent) refreshTrust(ctx context.Context, t *trust) error {
	_, roots, err := a.cluster.View().CARoots(nil)
	if err != nil || len(roots) == 0 {
		return err // no CA in the state yet: the first election is pending
	}
	var pems []string
	for _, r := range roots {
		pems = append(pems, r.CertPEM)
	}
	changed := !slices.Equal(pems, t.material.RootPEMs)
	m := t.material
	if m.Seed != nil && a.cluster.Store() != nil && slices.ContainsFunc(roots, func(r *state.CARoot) bool { return r.ID == m.Seed.Root.ID }) {
		m.Seed = nil // raft holds the CA now
		changed = true
	}
	leaf := t.source.Leaf()
	due := identity.NeedsRenewal(leaf, time.Now())
	if !changed && !due && leaf == t.checked {
		return nil // the roots and the certificate are the ones verified last time
	}
	if !due && rootSigned(leaf, roots[0].CertPEM) {
		t.checked = leaf
		if changed {
			m.RootPEMs = pems
			return a.storeTrust(t, m)
		}
		return nil
	}
	key, keyPEM, err := identity.NewKey()
	if err != nil {
		return err
	}
	var chain string
	if a.cluster.Store() != nil {
		signed, err := a.peering.CA().SignNode(ctx, ca.NodeRequest{PublicKey: key.Public(), Agent: t.source.Self()})
		if err != nil {
			return err
		}
		chain = signed.ChainPEM
	} else {
		pub, err := admission.PublicKeyPEM(key.Public())
		if err != nil {
			return err
		}
		conn, err := a.cluster.LeaderConn()
		if err != nil {
			return err
		}
		resp, err := pbadmission.NewAdmissionServiceClient(conn).Renew(ctx, &pbadmission.RenewRequest{PublicKeyPem: pub})
		if err != nil {
			return fmt.Errorf("ask a server to renew: %w", err)
		}
		chain, pems = resp.GetChainPem(), resp.GetRootPems()
	}
	m.CertPEM, m.KeyPEM, m.RootPEMs = chain, keyPEM, pems
	if err := a.storeTrust(t, m); err != nil {
		return err
	}
	a.log.Info("node certificate renewed", "identity", t.source.Self().String(), "expires", t.source.NotAfter())
	return nil
}

// storeTrust makes m the node's material: in the live source first (which
// checks it), then on disk.
func (a *Agent) storeTrust(t *trust, m admission.Material) error {
	if err := t.source.Update(m.CertPEM, m.KeyPEM, m.RootPEMs); err != nil {
		return err
	}
	t.material = m
	if t.dir == "" {
		return nil
	}
	return m.Save(t.dir)
}

// rootSigned reports whether leaf was signed by the root in rootPEM (its
// key), directly or through that root's cross-signed certificate.
func rootSigned(leaf *x509.Certificate, rootPEM string) bool {
	root, err := identity.ParseCertPEM(rootPEM)
	if err != nil {
		return false
	}
	return leaf.CheckSignatureFrom(root) == nil
}
