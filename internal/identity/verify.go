package identity

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Pool returns a pool of the CA certificates in rootPEMs. Each string may
// hold several certificates (a trust bundle); every certificate must be a
// CA. At least one certificate is required, because a nil RootCAs in a
// tls.Config means the system roots. Errors name the failing string as
// rootPEMs[i].
func Pool(rootPEMs ...string) (*x509.CertPool, error) {
	if len(rootPEMs) == 0 {
		return nil, fmt.Errorf("pool: no root PEMs: %w", ErrInvalidPEM)
	}
	pool := x509.NewCertPool()
	for i, s := range rootPEMs {
		certs, err := ParseCertsPEM(s)
		if err != nil {
			return nil, fmt.Errorf("pool: rootPEMs[%d]: %w", i, err)
		}
		for j, c := range certs {
			if !c.BasicConstraintsValid || !c.IsCA {
				return nil, fmt.Errorf("pool: rootPEMs[%d]: certificate %d (%q) is not a CA: %w", i, j, c.Subject.CommonName, ErrInvalidRoot)
			}
			pool.AddCert(c)
		}
	}
	return pool, nil
}

// VerifyLeaf verifies chain, a leaf followed by optional intermediates (such
// as a cross-signed root) in the order a TLS peer sends them, against roots
// at time now for the extended key usage usage (x509.ExtKeyUsageClientAuth
// when a server checks a client, x509.ExtKeyUsageServerAuth the other way,
// x509.ExtKeyUsageAny for either). It returns the leaf's SPIFFE ID, which
// must be its only URI SAN. The leaf must not be a CA.
//
// roots may hold the roots of several trust domains. A root whose only URI
// SAN is spiffe://<td> (as peerd's and Consul's roots have) vouches only for
// IDs in <td>: a chain to it is rejected for a leaf of another trust domain,
// so one peer's CA cannot mint another's identities. Roots without such a
// SAN vouch for any ID; keep them in a pool of their own.
//
// now must not be zero (crypto/x509 would read the clock). Errors wrap
// ErrVerify. The caller still checks that the ID is one it accepts.
func VerifyLeaf(chain []*x509.Certificate, roots *x509.CertPool, now time.Time, usage x509.ExtKeyUsage) (spiffeid.ID, error) {
	switch {
	case len(chain) == 0:
		return spiffeid.ID{}, fmt.Errorf("no certificate: %w", ErrVerify)
	case roots == nil:
		return spiffeid.ID{}, fmt.Errorf("nil root pool: %w", ErrVerify)
	case now.IsZero():
		return spiffeid.ID{}, fmt.Errorf("zero verification time: %w", ErrVerify)
	}
	for i, c := range chain {
		if c == nil {
			return spiffeid.ID{}, fmt.Errorf("certificate %d is nil: %w", i, ErrVerify)
		}
	}
	leaf := chain[0]
	if leaf.IsCA {
		return spiffeid.ID{}, fmt.Errorf("leaf is a CA certificate: %w", ErrVerify)
	}
	id, err := leafID(leaf)
	if err != nil {
		return spiffeid.ID{}, err
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("leaf %s: %v: %w", id, err, ErrVerify)
	}
	for _, ch := range chains {
		if td, ok := caTrustDomain(ch[len(ch)-1]); !ok || td == id.TrustDomain() {
			return id, nil
		}
	}
	return spiffeid.ID{}, fmt.Errorf("leaf %s chains only to roots of other trust domains: %w", id, ErrVerify)
}

// leafID returns the SPIFFE ID in a leaf's only URI SAN.
func leafID(leaf *x509.Certificate) (spiffeid.ID, error) {
	switch len(leaf.URIs) {
	case 0:
		return spiffeid.ID{}, fmt.Errorf("leaf has no URI SAN: %w", ErrVerify)
	case 1:
	default:
		return spiffeid.ID{}, fmt.Errorf("leaf has %d URI SANs, want 1: %w", len(leaf.URIs), ErrVerify)
	}
	id, err := spiffeid.FromURI(leaf.URIs[0])
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("leaf URI SAN %q is not a SPIFFE ID: %v: %w", leaf.URIs[0], err, ErrVerify)
	}
	if id.Path() == "" {
		return spiffeid.ID{}, fmt.Errorf("leaf URI SAN %q names a trust domain, not a workload: %w", id, ErrVerify)
	}
	return id, nil
}

// NeedsRenewal reports whether cert has reached half its lifetime at now
// (or is past it, or is nil). The threshold is deterministic, without
// jitter: callers that renew many leaves at once spread them themselves.
func NeedsRenewal(cert *x509.Certificate, now time.Time) bool {
	if cert == nil {
		return true
	}
	half := cert.NotBefore.Add(cert.NotAfter.Sub(cert.NotBefore) / 2)
	return !now.Before(half)
}
