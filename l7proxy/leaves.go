package l7proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/internal/identity"
)

// maxLeaves bounds the leaves cache: a node keeps the leaves of at most this
// many identities (its services, the gateway, and the services its gateway
// serves). An ECDSA P-256 leaf with its key and parsed certificate holds
// about 6 KiB of heap (measured: 3000 leaves took 17.5 MiB), so the cache
// stays within about 6 MiB whatever clients ask for.
// Past the bound, the least recently used identity is dropped; it is signed
// again when next used.
const maxLeaves = 1024

// leaves holds the leaf certificates of this node's identities (every local
// service, and the gateway) and renews them: at half their life, and when
// the cluster's active root changes. A handshake never waits for a renewal
// while the current leaf is still valid. The cache is bounded: at most
// maxLeaves identities (least recently used evicted first), and an identity
// unused for refresh's keep time is dropped.
type leaves struct {
	p  *Proxy
	mu sync.Mutex
	m  map[spiffeid.ID]*leaf
}

type leaf struct {
	mu     sync.Mutex // serialises signing
	cert   *tls.Certificate
	rootID string
	// renewing is set while a background renewal runs.
	renewing bool
	// lastUsed lets unused identities be dropped.
	lastUsed time.Time
}

func (l *leaves) entry(id spiffeid.ID) *leaf {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[spiffeid.ID]*leaf{}
	}
	e := l.m[id]
	if e == nil {
		if len(l.m) >= maxLeaves {
			l.evictLocked()
		}
		e = &leaf{lastUsed: l.p.cfg.Now()}
		l.m[id] = e
		l.p.m.leafCache.Set(float64(len(l.m)))
	}
	return e
}

// evictLocked drops the least recently used identity. l.mu is held; the
// lock order is l.mu, then an entry's mu.
func (l *leaves) evictLocked() {
	var (
		oldest   spiffeid.ID
		oldestAt time.Time
		found    bool
	)
	for id, e := range l.m {
		e.mu.Lock()
		used := e.lastUsed
		e.mu.Unlock()
		if !found || used.Before(oldestAt) {
			oldest, oldestAt, found = id, used, true
		}
	}
	if found {
		delete(l.m, oldest)
	}
}

// size is the number of identities cached.
func (l *leaves) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// get returns a valid leaf for id, signing one first if there is none (or
// it expired), and starting a background renewal when it is due.
func (l *leaves) get(ctx context.Context, id spiffeid.ID) (*tls.Certificate, error) {
	e := l.entry(id)
	e.mu.Lock()
	e.lastUsed = l.p.cfg.Now()
	e.mu.Unlock()
	return l.ensure(ctx, id, e)
}

// getClient is get for dialing as id: the leaf must allow client use. The
// CA signs a gateway node's leaves for services that are not on the node
// for server use only; once such a service is on this node (and may dial
// out), the leaf is signed again.
func (l *leaves) getClient(ctx context.Context, id spiffeid.ID) (*tls.Certificate, error) {
	cert, err := l.get(ctx, id)
	if err != nil || clientUsage(cert.Leaf) {
		return cert, err
	}
	if cert, err = l.sign(ctx, id, l.entry(id)); err != nil {
		return nil, err
	}
	if !clientUsage(cert.Leaf) {
		return nil, fmt.Errorf("leaf for %s allows server use only: the CA does not see the service registered on this node (yet)", id)
	}
	return cert, nil
}

func clientUsage(c *x509.Certificate) bool {
	return slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}

// ensure returns e's leaf, signing or renewing it as get describes.
func (l *leaves) ensure(ctx context.Context, id spiffeid.ID, e *leaf) (*tls.Certificate, error) {
	now := l.p.cfg.Now()
	activeRoot := ""
	if ts, err := l.p.trust.localTrust(l.p.cfg.View()); err == nil {
		activeRoot = ts.rootID
	}
	e.mu.Lock()
	cert := e.cert
	due := cert == nil || identity.NeedsRenewal(cert.Leaf, now) || (activeRoot != "" && e.rootID != activeRoot)
	valid := cert != nil && now.Before(cert.Leaf.NotAfter)
	if due && valid && !e.renewing {
		e.renewing = true
		go l.renew(id, e)
	}
	e.mu.Unlock()
	if valid {
		return cert, nil
	}
	return l.sign(ctx, id, e)
}

func (l *leaves) renew(id spiffeid.ID, e *leaf) {
	ctx, cancel := context.WithTimeout(l.p.ctx, 30*time.Second)
	defer cancel()
	if _, err := l.sign(ctx, id, e); err != nil {
		l.p.log.Warn("renew leaf certificate; keeping the current one", "id", id.String(), "err", err)
	}
	e.mu.Lock()
	e.renewing = false
	e.mu.Unlock()
}

// sign obtains a new leaf for id and stores it in e.
func (l *leaves) sign(ctx context.Context, id spiffeid.ID, e *leaf) (*tls.Certificate, error) {
	key, _, err := identity.NewKey()
	if err != nil {
		return nil, fmt.Errorf("leaf for %s: %w", id, err)
	}
	// One leaf serves both ends: the gateway's server side and the
	// outbound listeners' client side.
	chainPEM, err := l.p.cfg.Signer.SignLeaf(ctx, LeafRequest{PublicKey: key.Public(), ID: id, TTL: l.p.cfg.LeafTTL, Server: true, Client: true})
	if err != nil {
		l.p.m.leafRenewals.WithLabelValues("error").Inc()
		return nil, fmt.Errorf("leaf for %s: %w", id, err)
	}
	certs, err := identity.ParseCertsPEM(chainPEM)
	if err != nil || len(certs) == 0 {
		l.p.m.leafRenewals.WithLabelValues("error").Inc()
		return nil, fmt.Errorf("leaf for %s: signed chain: %v", id, err)
	}
	tc := &tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, c := range certs {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	rootID := fmt.Sprintf("%x", certs[0].AuthorityKeyId)
	l.p.m.leafRenewals.WithLabelValues("ok").Inc()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cert == nil || !certs[0].NotBefore.Before(e.cert.Leaf.NotBefore) {
		e.cert, e.rootID = tc, rootID
	}
	return e.cert, nil
}

// refresh renews, in the background, every leaf that is due, and drops
// leaves unused for longer than keep (identities of services that left the
// node). It runs periodically.
func (l *leaves) refresh(keep time.Duration) {
	now := l.p.cfg.Now()
	l.mu.Lock()
	ids := make(map[spiffeid.ID]*leaf, len(l.m))
	for id, e := range l.m {
		ids[id] = e
	}
	l.mu.Unlock()
	for id, e := range ids {
		e.mu.Lock()
		stale := now.Sub(e.lastUsed) > keep
		e.mu.Unlock()
		if stale {
			l.mu.Lock()
			if l.m[id] == e {
				delete(l.m, id)
			}
			l.p.m.leafCache.Set(float64(len(l.m)))
			l.mu.Unlock()
			continue
		}
		if _, err := l.ensure(l.p.ctx, id, e); err != nil {
			l.p.log.Warn("leaf certificate", "id", id.String(), "err", err)
		}
	}
}

// touch marks id as in use, so refresh keeps (and renews) its leaf.
func (l *leaves) touch(id spiffeid.ID) {
	e := l.entry(id)
	e.mu.Lock()
	e.lastUsed = l.p.cfg.Now()
	e.mu.Unlock()
}
