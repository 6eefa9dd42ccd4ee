package l7proxy

import (
	"crypto/x509"
	"errors"
	"fmt"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/identity"
)

// errNoCA means the cluster has no CA root yet (no leader so far, or a
// client node that has not mirrored the state yet).
var errNoCA = errors.New("the cluster CA is not available yet")

// trustSet is a pool of roots and the trust domain they vouch for.
type trustSet struct {
	pool *x509.CertPool
	td   spiffeid.TrustDomain
	// rootID is the active root's ID (local trust only).
	rootID string
	// version is the catalog index the set was built from.
	version uint64
}

// trust caches the root pools built from the catalog: this cluster's CA
// roots and each peer's trust bundle, rebuilt when their row changes.
type trust struct {
	mu    sync.Mutex
	local *trustSet
	peers map[string]*trustSet
}

// localTrust returns this cluster's roots (all of them, active first, so
// that leaves signed before a rotation keep verifying) and trust domain.
func (t *trust) localTrust(st *state.Store) (*trustSet, error) {
	idx, roots, err := st.CARoots(nil)
	if err != nil {
		return nil, fmt.Errorf("read CA roots: %w", err)
	}
	if len(roots) == 0 || !roots[0].Active {
		return nil, errNoCA
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.local != nil && t.local.version == idx && t.local.rootID == roots[0].ID {
		return t.local, nil
	}
	var pems []string
	for _, r := range roots {
		pems = append(pems, r.CertPEM)
	}
	pool, err := identity.Pool(pems...)
	if err != nil {
		return nil, fmt.Errorf("CA roots: %w", err)
	}
	td, err := spiffeid.TrustDomainFromString(roots[0].TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("CA trust domain %q: %w", roots[0].TrustDomain, err)
	}
	t.local = &trustSet{pool: pool, td: td, rootID: roots[0].ID, version: idx}
	return t.local, nil
}

// peerTrust returns the roots peer replicated to us and its trust domain.
func (t *trust) peerTrust(st *state.Store, peer string) (*trustSet, error) {
	_, b, err := st.TrustBundle(nil, peer)
	if err != nil {
		return nil, fmt.Errorf("read trust bundle of peer %q: %w", peer, err)
	}
	if b == nil || len(b.RootPEMs) == 0 {
		return nil, fmt.Errorf("peer %q has not sent its trust bundle yet", peer)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if ts := t.peers[peer]; ts != nil && ts.version == b.ModifyIndex {
		return ts, nil
	}
	pool, err := identity.Pool(b.RootPEMs...)
	if err != nil {
		return nil, fmt.Errorf("trust bundle of peer %q: %w", peer, err)
	}
	td, err := spiffeid.TrustDomainFromString(b.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("trust domain of peer %q: %w", peer, err)
	}
	if t.peers == nil {
		t.peers = map[string]*trustSet{}
	}
	ts := &trustSet{pool: pool, td: td, version: b.ModifyIndex}
	t.peers[peer] = ts
	return ts, nil
}
