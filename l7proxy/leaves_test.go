package l7proxy

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/identity"
)

// TestLeavesCacheIsBounded asks for the leaves of three times maxLeaves
// distinct identities, as a spray of valid service names would, and checks
// that the cache never holds more than maxLeaves, that the most recently
// used identities are the ones kept, and that a kept leaf is not signed
// again.
func TestLeavesCacheIsBounded(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("11111111-2222-3333-4444-555555555555.peerd")
	root, err := identity.CA{}.NewRoot(td)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	var signed atomic.Int64
	p := testProxy(t)
	now := time.Now()
	p.cfg.Now = func() time.Time { return now }
	p.cfg.View = func() *state.Store { return st }
	p.ctx = context.Background()
	p.cfg.Signer = SignerFunc(func(_ context.Context, req LeafRequest) (string, error) {
		signed.Add(1)
		return identity.CA{Now: p.cfg.Now}.SignLeaf(root, req.PublicKey, identity.LeafRequest{ID: req.ID, TTL: req.TTL, Server: req.Server, Client: req.Client})
	})
	p.leaves.p = p
	ids := make([]spiffeid.ID, 3*maxLeaves)
	for i := range ids {
		if ids[i], err = identity.ServiceID(td, identity.DefaultNamespace, "dc", fmt.Sprintf("svc-%d", i)); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Millisecond)
		if _, err := p.leaves.get(context.Background(), ids[i]); err != nil {
			t.Fatal(err)
		}
		if n := p.leaves.size(); n > maxLeaves {
			t.Fatalf("after %d identities the cache holds %d leaves, bound %d", i+1, n, maxLeaves)
		}
	}
	if got := signed.Load(); got != int64(len(ids)) {
		t.Fatalf("signed %d leaves for %d identities", got, len(ids))
	}
	// The last maxLeaves identities are cached: asking again signs nothing.
	for _, id := range ids[len(ids)-maxLeaves:] {
		if _, err := p.leaves.get(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	if got := signed.Load(); got != int64(len(ids)) {
		t.Fatalf("the most recently used leaves were evicted: %d signatures, want %d", got, len(ids))
	}
	// The first one was evicted and is signed again.
	if _, err := p.leaves.get(context.Background(), ids[0]); err != nil {
		t.Fatal(err)
	}
	if got := signed.Load(); got != int64(len(ids))+1 {
		t.Fatalf("an evicted identity was not signed again: %d signatures", got)
	}
	// Unused identities expire.
	now = now.Add(time.Hour)
	p.leaves.refresh(10 * time.Minute)
	if n := p.leaves.size(); n != 0 {
		t.Fatalf("%d leaves unused for an hour are still cached", n)
	}
}

// TestVerifyReasonNameConstraints: a leaf signed with the cluster root's
// key outside the CA's rules fails on the root's name constraints, and the
// refusal is counted under a reason that says so.
func TestVerifyReasonNameConstraints(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("11111111-2222-3333-4444-555555555555.peerd")
	root, err := identity.CA{}.NewRoot(td)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := identity.Pool(root.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	rootCert, _ := identity.ParseCertPEM(root.CertPEM)
	rootKey, _ := identity.ParseKeyPEM(root.KeyPEM)
	key, _, _ := identity.NewKey()
	web, _ := identity.ServiceID(td, identity.DefaultNamespace, "dc", "web")
	for _, tc := range []struct {
		uri, dns, want string
	}{
		{"spiffe://evil.peerd/ns/default/dc/dc/svc/web", "", "wrong_trust_domain"},
		{web.String(), "bank.example.com", "name_not_permitted"},
	} {
		u, _ := url.Parse(tc.uri)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{u}}
		if tc.dns != "" {
			tmpl.DNSNames = []string{tc.dns}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, rootCert, key.Public(), rootKey)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(der)
		_, err = identity.VerifyLeaf([]*x509.Certificate{leaf}, pool, time.Now(), x509.ExtKeyUsageClientAuth)
		if err == nil {
			t.Fatalf("%s %s: a leaf outside the root's names verified", tc.uri, tc.dns)
		}
		if got := verifyReason(err); got != tc.want {
			t.Errorf("%s %s: reason %q for %v, want %q", tc.uri, tc.dns, got, err, tc.want)
		}
	}
}
