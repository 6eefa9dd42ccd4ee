package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Defaults for the zero CA.
const (
	DefaultRootTTL = 10 * 365 * 24 * time.Hour
	DefaultLeafTTL = 72 * time.Hour
)

// backdate is subtracted from NotBefore of every certificate the CA creates,
// to tolerate clocks that lag ours, as Consul does.
const backdate = Backdate

// Backdate is how far before its signing a certificate's NotBefore is set
// (clock skew between nodes); a certificate was signed at NotBefore+Backdate.
const Backdate = time.Minute

// rootMaxPathLen is the path length constraint of a root: 1, so that the
// next root's cross-signed certificate (a CA certificate that is not
// self-issued) can sit between a new leaf and this root in the chains of
// clients that trust only this root. With 0, such clients reject the chain.
// Cross-signed certificates themselves get 0: only leaves below them.
const rootMaxPathLen = 1

// CA is peerd's built-in certificate authority. It holds settings only; the
// roots it creates are values kept by the caller (in raft). The zero CA is
// ready to use. A CA is safe for concurrent use if Now is.
type CA struct {
	// Now returns the current time. nil = time.Now.
	Now func() time.Time
	// RootTTL is the lifetime of new roots. 0 = DefaultRootTTL (10 years).
	RootTTL time.Duration
	// LeafTTL is the lifetime of leaves whose request has no TTL.
	// 0 = DefaultLeafTTL (72 hours).
	LeafTTL time.Duration
}

// Validate reports settings that cannot be used: negative TTLs.
func (c CA) Validate() error {
	if c.RootTTL < 0 {
		return fmt.Errorf("CA root TTL %v is negative: %w", c.RootTTL, ErrInvalidRequest)
	}
	if c.LeafTTL < 0 {
		return fmt.Errorf("CA leaf TTL %v is negative: %w", c.LeafTTL, ErrInvalidRequest)
	}
	return nil
}

func (c CA) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

func (c CA) rootTTL() time.Duration {
	if c.RootTTL == 0 {
		return DefaultRootTTL
	}
	return c.RootTTL
}

func (c CA) leafTTL() time.Duration {
	if c.LeafTTL == 0 {
		return DefaultLeafTTL
	}
	return c.LeafTTL
}

// Root is one root of the built-in CA, in the form the catalog stores it.
type Root struct {
	// ID is the lowercase hex of the certificate's SubjectKeyId, itself
	// the first 160 bits of the SHA-256 of the public key (RFC 7093,
	// method 1). It names the root's key: a leaf's AuthorityKeyId in hex
	// is the ID of the root that signed it.
	ID string
	// CertPEM is the self-signed root certificate.
	CertPEM string
	// KeyPEM is the root's private key, PKCS#8. The built-in CA keeps it
	// in raft, like Consul's built-in provider.
	KeyPEM string
	// TrustDomain is the trust domain name (not the spiffe:// URI).
	TrustDomain string
	// NotBefore and NotAfter copy the certificate's validity. They are
	// informational: the CA reads validity from CertPEM.
	NotBefore, NotAfter time.Time
	// CrossSignedPEM is this root's certificate signed by the previous
	// root's key (see CA.CrossSign), or "" for a cluster's first root.
	CrossSignedPEM string
}

// NewRoot generates an ECDSA P-256 key and a self-signed root certificate
// for td: URI SAN spiffe://<td>, CA with a path length constraint of 1 (see
// CrossSign), key usage certificate and CRL signing, subject CN
// "peerd CA <first 8 hex digits of ID>", valid from a minute before now for
// RootTTL, and critical name constraints (see nameConstraints): whatever its
// key signs, verifiers accept only names of td.
func (c CA) NewRoot(td spiffeid.TrustDomain) (Root, error) {
	if err := c.Validate(); err != nil {
		return Root{}, err
	}
	if td.IsZero() {
		return Root{}, fmt.Errorf("new root: empty trust domain: %w", ErrInvalidName)
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return Root{}, fmt.Errorf("new root: %w", err)
	}
	ski, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return Root{}, fmt.Errorf("new root: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return Root{}, fmt.Errorf("new root: %w", err)
	}
	id := hex.EncodeToString(ski)
	now := c.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "peerd CA " + id[:8]},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(c.rootTTL()),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            rootMaxPathLen,
		SubjectKeyId:          ski,
		URIs:                  []*url.URL{td.ID().URL()},
	}
	nameConstraints(tmpl, td)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return Root{}, fmt.Errorf("new root: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Root{}, fmt.Errorf("new root: parse created certificate: %w", err)
	}
	return Root{
		ID:          id,
		CertPEM:     encodeCert(der),
		KeyPEM:      keyPEM,
		TrustDomain: td.Name(),
		NotBefore:   cert.NotBefore,
		NotAfter:    cert.NotAfter,
	}, nil
}

// nameConstraints limits what a root vouches for to trust domain td, so
// that a leaf signed with its key outside SignLeaf's rules still fails
// verification: URI SANs (SPIFFE IDs) only of host td, DNS SANs only td and
// names below it (the peering server name and the SNI forms end in td), no
// IP SANs. The constraints are critical, as RFC 5280 requires. crypto/x509
// enforces all three kinds (TestRootNameConstraints); OpenSSL and BoringSSL
// (Envoy, on a Consul peer) implement URI constraints too, untested here.
func nameConstraints(tmpl *x509.Certificate, td spiffeid.TrustDomain) {
	tmpl.PermittedDNSDomainsCritical = true
	tmpl.PermittedDNSDomains = []string{td.Name()}
	tmpl.PermittedURIDomains = []string{td.Name()}
	tmpl.ExcludedIPRanges = []*net.IPNet{
		{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
	}
}

// CrossSign certifies newRoot's public key with oldRoot's key and returns
// the certificate as PEM, to be stored as newRoot.CrossSignedPEM. The
// certificate copies newRoot's subject, SubjectKeyId, URI SAN and name
// constraints, so a
// client that trusts only oldRoot accepts a leaf of newRoot when the peer
// sends this certificate after the leaf as an intermediate: leaf, then
// cross-signed certificate, then oldRoot. It is a CA certificate with a path
// length constraint of 0, valid from a minute before now until the earlier
// of the two roots' expiry.
//
// oldRoot must hold its key and be valid now; newRoot needs only its
// certificate, which must be a SPIFFE CA certificate valid now. Rotation
// bridges one step: a root cross-signed by a root that was itself
// cross-signed does not chain back two roots, since roots have a path length
// constraint of 1. Nor does it bridge a change of trust domain: VerifyLeaf
// accepts a leaf only through a root of the leaf's own trust domain.
func (c CA) CrossSign(newRoot, oldRoot Root) (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	now := c.now()
	newCert, _, err := parseRootCert(newRoot, now)
	if err != nil {
		return "", fmt.Errorf("cross-sign: new root: %w", err)
	}
	oldCert, oldKey, _, err := parseRoot(oldRoot, now)
	if err != nil {
		return "", fmt.Errorf("cross-sign: old root: %w", err)
	}
	if len(newCert.SubjectKeyId) == 0 {
		return "", fmt.Errorf("cross-sign: new root has no SubjectKeyId: %w", ErrInvalidRoot)
	}
	if newCert.PublicKey.(*ecdsa.PublicKey).Equal(oldCert.PublicKey) {
		return "", fmt.Errorf("cross-sign: new and old root share a key: %w", ErrInvalidRoot)
	}
	serial, err := newSerial()
	if err != nil {
		return "", fmt.Errorf("cross-sign: %w", err)
	}
	notBefore := later(now.Add(-backdate), oldCert.NotBefore)
	notAfter := earlier(newCert.NotAfter, oldCert.NotAfter)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		RawSubject:            newCert.RawSubject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		SubjectKeyId:          newCert.SubjectKeyId,
		URIs:                  newCert.URIs,
		// The new root's name constraints bind its leaves on the old
		// root's path too.
		PermittedDNSDomainsCritical: newCert.PermittedDNSDomainsCritical,
		PermittedDNSDomains:         newCert.PermittedDNSDomains,
		PermittedURIDomains:         newCert.PermittedURIDomains,
		ExcludedIPRanges:            newCert.ExcludedIPRanges,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, oldCert, newCert.PublicKey, oldKey)
	if err != nil {
		return "", fmt.Errorf("cross-sign: create certificate: %w", err)
	}
	return encodeCert(der), nil
}

// LeafRequest describes a leaf certificate for CA.SignLeaf.
type LeafRequest struct {
	// ID is the leaf's SPIFFE ID, its only URI SAN; it must belong to the
	// root's trust domain. The zero ID means no URI SAN (a certificate
	// identified by DNSNames or IPs only, like the peering server's).
	ID spiffeid.ID
	// DNSNames are DNS SANs; see ValidateDNSName. A leading "*." label
	// makes a wildcard.
	DNSNames []string
	// IPs are IP address SANs.
	IPs []net.IP
	// TTL is the requested lifetime. 0 = the CA's LeafTTL. The lifetime
	// is clamped to the root's remaining life.
	TTL time.Duration
	// Server and Client set the extended key usages TLS server and TLS
	// client authentication. At least one must be set.
	Server, Client bool
}

// SignLeaf signs a leaf certificate for pub, which must be an ECDSA P-256
// key, with root's key and returns it as PEM. The leaf is valid from a
// minute before now for req.TTL, except that it never outlives the root: a
// TTL reaching past the root's NotAfter is clamped to it, so a leaf signed
// near the end of the root's life is shorter than asked (NeedsRenewal then
// asks for renewal early, and rotation is expected well before). The root
// must be valid now; a leaf needs at least one SAN.
//
// Leaves have key usage digital signature, IsCA false, the extended key
// usages from req.Server and req.Client, and no subject (the SAN extension is
// then critical, as RFC 5280 requires).
func (c CA) SignLeaf(root Root, pub crypto.PublicKey, req LeafRequest) (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	now := c.now()
	rootCert, rootKey, td, err := parseRoot(root, now)
	if err != nil {
		return "", fmt.Errorf("sign leaf: root: %w", err)
	}
	if err := checkP256(pub); err != nil {
		return "", fmt.Errorf("sign leaf: public key: %w", err)
	}
	tmpl, err := c.leafTemplate(req, td, now)
	if err != nil {
		return "", fmt.Errorf("sign leaf: %w", err)
	}
	tmpl.NotBefore = later(tmpl.NotBefore, rootCert.NotBefore)
	tmpl.NotAfter = earlier(tmpl.NotAfter, rootCert.NotAfter)
	ski, err := subjectKeyID(pub.(*ecdsa.PublicKey))
	if err != nil {
		return "", fmt.Errorf("sign leaf: %w", err)
	}
	tmpl.SubjectKeyId = ski
	der, err := x509.CreateCertificate(rand.Reader, tmpl, rootCert, pub, rootKey)
	if err != nil {
		return "", fmt.Errorf("sign leaf: create certificate: %w", err)
	}
	return encodeCert(der), nil
}

// leafTemplate validates req and turns it into a certificate template.
func (c CA) leafTemplate(req LeafRequest, td spiffeid.TrustDomain, now time.Time) (*x509.Certificate, error) {
	if !req.Server && !req.Client {
		return nil, fmt.Errorf("leaf request sets neither Server nor Client: %w", ErrInvalidRequest)
	}
	if req.TTL < 0 {
		return nil, fmt.Errorf("leaf TTL %v is negative: %w", req.TTL, ErrInvalidRequest)
	}
	if req.ID.IsZero() && len(req.DNSNames) == 0 && len(req.IPs) == 0 {
		return nil, fmt.Errorf("leaf request has no SPIFFE ID, DNS name or IP: %w", ErrInvalidRequest)
	}
	tmpl := &x509.Certificate{
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  false,
	}
	if !req.ID.IsZero() {
		if !req.ID.MemberOf(td) {
			return nil, fmt.Errorf("SPIFFE ID %q is not in the root's trust domain %q: %w", req.ID, td.Name(), ErrInvalidRequest)
		}
		tmpl.URIs = []*url.URL{req.ID.URL()}
	}
	for _, name := range req.DNSNames {
		if err := ValidateDNSName(strings.TrimPrefix(name, "*.")); err != nil {
			return nil, fmt.Errorf("DNS SAN: %w", err)
		}
		tmpl.DNSNames = append(tmpl.DNSNames, name)
	}
	for _, ip := range req.IPs {
		if ip.To16() == nil {
			return nil, fmt.Errorf("IP SAN %v is not an IPv4 or IPv6 address: %w", []byte(ip), ErrInvalidRequest)
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	}
	if req.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if req.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = c.leafTTL()
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(ttl)
	return tmpl, nil
}

// parseRoot parses a root that will sign: its certificate (see
// parseRootCert) and its key, which must be ECDSA P-256 and match the
// certificate.
func parseRoot(r Root, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, spiffeid.TrustDomain, error) {
	cert, td, err := parseRootCert(r, now)
	if err != nil {
		return nil, nil, spiffeid.TrustDomain{}, err
	}
	if r.KeyPEM == "" {
		return nil, nil, spiffeid.TrustDomain{}, fmt.Errorf("root %s has no private key: %w", r.ID, ErrInvalidRoot)
	}
	signer, err := ParseKeyPEM(r.KeyPEM)
	if err != nil {
		return nil, nil, spiffeid.TrustDomain{}, err
	}
	key := signer.(*ecdsa.PrivateKey)
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, spiffeid.TrustDomain{}, fmt.Errorf("root %s: private key does not match certificate: %w", r.ID, ErrInvalidRoot)
	}
	return cert, key, td, nil
}

// parseRootCert parses a root's certificate and checks that it is a SPIFFE
// CA certificate (IsCA, one URI SAN spiffe://<td> with no path, matching
// r.TrustDomain when set) with an ECDSA P-256 key, valid at now.
func parseRootCert(r Root, now time.Time) (*x509.Certificate, spiffeid.TrustDomain, error) {
	cert, err := ParseCertPEM(r.CertPEM)
	if err != nil {
		return nil, spiffeid.TrustDomain{}, err
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, spiffeid.TrustDomain{}, fmt.Errorf("certificate %q is not a CA: %w", cert.Subject.CommonName, ErrInvalidRoot)
	}
	td, ok := caTrustDomain(cert)
	if !ok {
		return nil, spiffeid.TrustDomain{}, fmt.Errorf("certificate %q has no single spiffe://<trust-domain> URI SAN: %w", cert.Subject.CommonName, ErrInvalidRoot)
	}
	if r.TrustDomain != "" && r.TrustDomain != td.Name() {
		return nil, spiffeid.TrustDomain{}, fmt.Errorf("root trust domain %q, but certificate says %q: %w", r.TrustDomain, td.Name(), ErrInvalidRoot)
	}
	if err := checkP256(cert.PublicKey); err != nil {
		return nil, spiffeid.TrustDomain{}, fmt.Errorf("certificate %q: %w", cert.Subject.CommonName, err)
	}
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, spiffeid.TrustDomain{}, fmt.Errorf("certificate %q is valid from %s to %s, not at %s: %w",
			cert.Subject.CommonName, cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339),
			now.UTC().Format(time.RFC3339), ErrExpired)
	}
	return cert, td, nil
}

// caTrustDomain returns the trust domain named by a CA certificate's only
// URI SAN, spiffe://<td> without a path, as SPIFFE signing certificates and
// Consul's roots carry it.
func caTrustDomain(cert *x509.Certificate) (spiffeid.TrustDomain, bool) {
	if len(cert.URIs) != 1 {
		return spiffeid.TrustDomain{}, false
	}
	id, err := spiffeid.FromURI(cert.URIs[0])
	if err != nil || id.Path() != "" {
		return spiffeid.TrustDomain{}, false
	}
	return id.TrustDomain(), true
}

// subjectKeyID is RFC 7093 method 1: the leftmost 160 bits of the SHA-256
// of the subjectPublicKey bit string (for ECDSA, the uncompressed point).
func subjectKeyID(pub *ecdsa.PublicKey) ([]byte, error) {
	k, err := pub.ECDH()
	if err != nil {
		return nil, fmt.Errorf("subject key ID: %v: %w", err, ErrUnsupportedKey)
	}
	sum := sha256.Sum256(k.Bytes())
	return sum[:20], nil
}

// newSerial returns a random serial number in [1, 2^128].
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
