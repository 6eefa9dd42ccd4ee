package identity

import (
	"bytes"
	"crypto/x509"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// FuzzVerifyLeaf feeds VerifyLeaf the client certificate chains a TLS peer
// could send (DER certificates one after another, as in a TLS Certificate
// message, or PEM as a trust bundle or a -ca-file holds) at any time and
// for any usage. It must never panic; a refusal wraps ErrVerify; an
// accepted chain names a workload of the trust domain of a root it chains
// to, in the leaf's only URI SAN.
func FuzzVerifyLeaf(f *testing.F) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ca := CA{Now: func() time.Time { return base }}
	tdA := spiffeid.RequireTrustDomainFromString("a.peerd")
	tdB := spiffeid.RequireTrustDomainFromString("b.peerd")
	rootA, err := ca.NewRoot(tdA)
	if err != nil {
		f.Fatal(err)
	}
	rootB, err := ca.NewRoot(tdB)
	if err != nil {
		f.Fatal(err)
	}
	nextA, err := ca.NewRoot(tdA)
	if err != nil {
		f.Fatal(err)
	}
	if nextA.CrossSignedPEM, err = ca.CrossSign(nextA, rootA); err != nil {
		f.Fatal(err)
	}
	roots, err := Pool(rootA.CertPEM, rootB.CertPEM)
	if err != nil {
		f.Fatal(err)
	}
	sign := func(root Root, req LeafRequest) *x509.Certificate {
		key, _, err := NewKey()
		if err != nil {
			f.Fatal(err)
		}
		p, err := ca.SignLeaf(root, key.Public(), req)
		if err != nil {
			f.Fatal(err)
		}
		c, err := ParseCertPEM(p)
		if err != nil {
			f.Fatal(err)
		}
		return c
	}
	cert := func(p string) *x509.Certificate {
		c, err := ParseCertPEM(p)
		if err != nil {
			f.Fatal(err)
		}
		return c
	}
	web := spiffeid.RequireFromSegments(tdA, "ns", "default", "dc", "dc1", "svc", "web")
	good := sign(rootA, LeafRequest{ID: web, Client: true})
	chains := [][]*x509.Certificate{
		{good},
		{sign(rootA, LeafRequest{ID: web, Server: true})},
		{sign(rootA, LeafRequest{DNSNames: []string{"server.dc1.peering.a.peerd"}, Client: true})},
		{sign(rootB, LeafRequest{ID: spiffeid.RequireFromSegments(tdB, "ns", "default", "dc", "dc1", "svc", "api"), Client: true})},
		// A leaf of the next root, with the cross-signed root as its
		// intermediate: it chains to rootA.
		{sign(nextA, LeafRequest{ID: web, Client: true}), cert(nextA.CrossSignedPEM)},
		{cert(rootA.CertPEM)},
		{good, cert(rootB.CertPEM), cert(rootA.CertPEM)},
	}
	// The seeds reach past the refusals: the good leaf and the leaf of the
	// cross-signed root verify.
	for _, ch := range [][]*x509.Certificate{chains[0], chains[4]} {
		if _, err := VerifyLeaf(ch, roots, base, x509.ExtKeyUsageClientAuth); err != nil {
			f.Fatalf("seed chain: %v", err)
		}
	}
	for _, ch := range chains {
		var der []byte
		var pemText []byte
		for _, c := range ch {
			der = append(der, c.Raw...)
			pemText = append(pemText, encodeCert(c.Raw)...)
		}
		f.Add(der, uint8(x509.ExtKeyUsageClientAuth), int64(0))
		f.Add(pemText, uint8(x509.ExtKeyUsageAny), int64(3600))
	}
	f.Add(good.Raw, uint8(x509.ExtKeyUsageClientAuth), int64(-1<<40))
	f.Add([]byte{}, uint8(0), int64(0))
	f.Fuzz(func(t *testing.T, data []byte, usage uint8, offset int64) {
		var chain []*x509.Certificate
		var err error
		if bytes.Contains(data, []byte("-----BEGIN")) {
			chain, err = ParseCertsPEM(string(data))
		} else {
			chain, err = x509.ParseCertificates(data)
		}
		if err != nil {
			return // not certificates: crypto/tls refuses them before VerifyConnection
		}
		now := base.Add(time.Duration(offset) * time.Second)
		id, err := VerifyLeaf(chain, roots, now, x509.ExtKeyUsage(usage%16))
		if err != nil {
			if !errors.Is(err, ErrVerify) {
				t.Fatalf("VerifyLeaf: %v does not wrap ErrVerify", err)
			}
			return
		}
		leaf := chain[0]
		if leaf.IsCA || len(leaf.URIs) != 1 || leaf.URIs[0].String() != id.String() {
			t.Fatalf("VerifyLeaf accepted %s from a leaf with IsCA %v and URI SANs %v", id, leaf.IsCA, leaf.URIs)
		}
		if id.Path() == "" {
			t.Fatalf("VerifyLeaf accepted the trust domain ID %s", id)
		}
		if !slices.Contains([]spiffeid.TrustDomain{tdA, tdB}, id.TrustDomain()) {
			t.Fatalf("VerifyLeaf accepted %s, of neither root's trust domain", id)
		}
	})
}
