package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"math/big"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// t0 is the tests' "now"; every CA here reads it through CA.Now.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func at(t time.Time) func() time.Time { return func() time.Time { return t } }

// newRoot makes a root for td with the CA's clock set to t0.
func newRoot(t *testing.T, td spiffeid.TrustDomain) Root {
	t.Helper()
	r, err := CA{Now: at(t0)}.NewRoot(td)
	if err != nil {
		t.Fatalf("NewRoot(%s): %v", td, err)
	}
	return r
}

// leaf signs a leaf for a fresh key and returns the certificate, its PEM and
// the key's PEM.
func leaf(t *testing.T, ca CA, root Root, req LeafRequest) (*x509.Certificate, string, string) {
	t.Helper()
	key, keyPEM, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.SignLeaf(root, key.Public(), req)
	if err != nil {
		t.Fatalf("SignLeaf(%+v): %v", req, err)
	}
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert, certPEM, keyPEM
}

func mustCert(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	c, err := ParseCertPEM(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustKey(t *testing.T, s string) crypto.Signer {
	t.Helper()
	k, err := ParseKeyPEM(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// createCert signs tmpl for pub with parent and signer, for certificates the
// CA refuses to make.
func createCert(t *testing.T, tmpl, parent *x509.Certificate, pub any, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(1)
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = t0.Add(-time.Hour), t0.Add(time.Hour)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// selfSigned is a CA certificate without a URI SAN (like a third-party CA),
// valid around t0.
func selfSigned(t *testing.T, key crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "test CA"},
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	return createCert(t, tmpl, tmpl, key.Public(), key)
}

func spiffeURL(t *testing.T, s string) *url.URL {
	t.Helper()
	return spiffeid.RequireFromString(s).URL()
}

func TestNewRoot(t *testing.T) {
	td := testTD(t)
	tests := []struct {
		name    string
		ttl     time.Duration
		wantTTL time.Duration
	}{
		{"default TTL", 0, 10 * 365 * 24 * time.Hour},
		{"custom TTL", 30 * 24 * time.Hour, 30 * 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := CA{Now: at(t0), RootTTL: tt.ttl}.NewRoot(td)
			if err != nil {
				t.Fatal(err)
			}
			c := mustCert(t, r.CertPEM)
			checks := []struct {
				what      string
				got, want any
			}{
				{"IsCA", c.IsCA, true},
				{"BasicConstraintsValid", c.BasicConstraintsValid, true},
				{"MaxPathLen", c.MaxPathLen, 1},
				{"KeyUsage", c.KeyUsage, x509.KeyUsageCertSign | x509.KeyUsageCRLSign},
				{"URI SANs", urlStrings(c.URIs), []string{"spiffe://" + td.Name()}},
				{"DNS SANs", len(c.DNSNames), 0},
				{"CN", c.Subject.CommonName, "peerd CA " + r.ID[:8]},
				{"NotBefore", c.NotBefore, t0.Add(-time.Minute)},
				{"NotAfter", c.NotAfter, t0.Add(tt.wantTTL)},
				{"Root.NotBefore", r.NotBefore, c.NotBefore},
				{"Root.NotAfter", r.NotAfter, c.NotAfter},
				{"Root.TrustDomain", r.TrustDomain, td.Name()},
				{"Root.ID", r.ID, hex.EncodeToString(c.SubjectKeyId)},
				{"ID length", len(r.ID), 40},
				{"SignatureAlgorithm", c.SignatureAlgorithm, x509.ECDSAWithSHA256},
				{"Root.CrossSignedPEM", r.CrossSignedPEM, ""},
			}
			for _, ch := range checks {
				if !equal(ch.got, ch.want) {
					t.Errorf("%s: got %v, want %v", ch.what, ch.got, ch.want)
				}
			}
			if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
				t.Errorf("public key: got %T, want ECDSA P-256", c.PublicKey)
			}
			if err := c.CheckSignatureFrom(c); err != nil {
				t.Errorf("not self-signed: %v", err)
			}
			if k := mustKey(t, r.KeyPEM); !k.Public().(*ecdsa.PublicKey).Equal(c.PublicKey) {
				t.Error("KeyPEM does not match CertPEM")
			}
			// A root verifies as its own chain.
			if _, err := c.Verify(x509.VerifyOptions{Roots: mustPool(t, r.CertPEM), CurrentTime: t0}); err != nil {
				t.Errorf("root does not verify against itself: %v", err)
			}
		})
	}

	a, b := newRoot(t, td), newRoot(t, td)
	if a.ID == b.ID || a.KeyPEM == b.KeyPEM {
		t.Errorf("two roots share ID %q or key", a.ID)
	}
}

func TestNewRootErrors(t *testing.T) {
	td := testTD(t)
	tests := []struct {
		name string
		ca   CA
		td   spiffeid.TrustDomain
		want error
	}{
		{"zero trust domain", CA{}, spiffeid.TrustDomain{}, ErrInvalidName},
		{"negative root TTL", CA{RootTTL: -1}, td, ErrInvalidRequest},
		{"negative leaf TTL", CA{LeafTTL: -1}, td, ErrInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r, err := tt.ca.NewRoot(tt.td); !errors.Is(err, tt.want) {
				t.Errorf("got %v, %v; want %v", r.ID, err, tt.want)
			}
		})
	}
}

func TestSignLeaf(t *testing.T) {
	td := testTD(t)
	root := newRoot(t, td)
	rootCert := mustCert(t, root.CertPEM)
	web, _ := ServiceID(td, "default", "dc1", "web")
	gw, _ := GatewayID(td, "dc1")

	tests := []struct {
		name       string
		ca         CA
		req        LeafRequest
		wantEKU    []x509.ExtKeyUsage
		wantAfter  time.Time
		wantURIs   []string
		wantDNS    []string
		wantIPs    []string
		wantBefore time.Time
	}{
		{
			name:      "client SVID, default TTL",
			ca:        CA{Now: at(t0)},
			req:       LeafRequest{ID: web, Client: true},
			wantEKU:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			wantURIs:  []string{web.String()},
			wantAfter: t0.Add(72 * time.Hour),
		},
		{
			name:      "server cert with DNS SAN only, CA leaf TTL",
			ca:        CA{Now: at(t0), LeafTTL: time.Hour},
			req:       LeafRequest{DNSNames: []string{ServerName("dc1", td)}, Server: true},
			wantEKU:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			wantDNS:   []string{ServerName("dc1", td)},
			wantAfter: t0.Add(time.Hour),
		},
		{
			name: "gateway, both usages, request TTL, wildcard and IPs",
			ca:   CA{Now: at(t0), LeafTTL: time.Hour},
			req: LeafRequest{ID: gw, DNSNames: []string{"*.external." + td.Name()},
				IPs: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}, TTL: 2 * time.Hour, Server: true, Client: true},
			wantEKU:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			wantURIs:  []string{gw.String()},
			wantDNS:   []string{"*.external." + td.Name()},
			wantIPs:   []string{"127.0.0.1", "::1"},
			wantAfter: t0.Add(2 * time.Hour),
		},
		{
			name:      "TTL past the root's end is clamped",
			ca:        CA{Now: at(rootCert.NotAfter.Add(-time.Hour))},
			req:       LeafRequest{ID: web, Client: true},
			wantEKU:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			wantURIs:  []string{web.String()},
			wantAfter: rootCert.NotAfter,
		},
		{
			name:       "NotBefore not before the root's",
			ca:         CA{Now: at(rootCert.NotBefore.Add(time.Second))},
			req:        LeafRequest{ID: web, Client: true},
			wantEKU:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			wantURIs:   []string{web.String()},
			wantBefore: rootCert.NotBefore,
			wantAfter:  rootCert.NotBefore.Add(time.Second + 72*time.Hour),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, keyPEM := leaf(t, tt.ca, root, tt.req)
			wantBefore := tt.wantBefore
			if wantBefore.IsZero() {
				wantBefore = tt.ca.Now().Add(-time.Minute)
			}
			checks := []struct {
				what      string
				got, want any
			}{
				{"IsCA", c.IsCA, false},
				{"BasicConstraintsValid", c.BasicConstraintsValid, true},
				{"KeyUsage", c.KeyUsage, x509.KeyUsageDigitalSignature},
				{"ExtKeyUsage", c.ExtKeyUsage, tt.wantEKU},
				{"URI SANs", urlStrings(c.URIs), tt.wantURIs},
				{"DNS SANs", c.DNSNames, tt.wantDNS},
				{"IP SANs", ipStrings(c.IPAddresses), tt.wantIPs},
				{"NotBefore", c.NotBefore, wantBefore},
				{"NotAfter", c.NotAfter, tt.wantAfter},
				{"AuthorityKeyId", hex.EncodeToString(c.AuthorityKeyId), root.ID},
				{"Issuer", c.Issuer.String(), rootCert.Subject.String()},
				{"Subject", c.Subject.String(), ""},
			}
			for _, ch := range checks {
				if !equal(ch.got, ch.want) {
					t.Errorf("%s: got %v, want %v", ch.what, ch.got, ch.want)
				}
			}
			if err := c.CheckSignatureFrom(rootCert); err != nil {
				t.Errorf("not signed by the root: %v", err)
			}
			if !mustKey(t, keyPEM).Public().(*ecdsa.PublicKey).Equal(c.PublicKey) {
				t.Error("leaf does not carry the requested public key")
			}
		})
	}
}

func TestSignLeafErrors(t *testing.T) {
	td := testTD(t)
	root := newRoot(t, td)
	rootCert := mustCert(t, root.CertPEM)
	other := newRoot(t, spiffeid.RequireTrustDomainFromString("other.peerd"))
	web, _ := ServiceID(td, "default", "dc1", "web")
	otherWeb, _ := ServiceID(spiffeid.RequireTrustDomainFromString("other.peerd"), "default", "dc1", "web")
	key, _, _ := NewKey()
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, leafPEM, _ := leaf(t, CA{Now: at(t0)}, root, LeafRequest{ID: web, Client: true})
	good := LeafRequest{ID: web, Client: true}

	with := func(f func(r *Root)) Root { r := root; f(&r); return r }
	tests := []struct {
		name    string
		ca      CA
		root    Root
		pub     crypto.PublicKey
		req     LeafRequest
		want    error
		wantSub string
	}{
		{"root expired", CA{Now: at(rootCert.NotAfter.Add(time.Second))}, root, key.Public(), good, ErrExpired, "not at"},
		{"root not yet valid", CA{Now: at(rootCert.NotBefore.Add(-time.Second))}, root, key.Public(), good, ErrExpired, "not at"},
		{"root key mismatch", CA{Now: at(t0)}, with(func(r *Root) { r.KeyPEM = other.KeyPEM }), key.Public(), good, ErrInvalidRoot, "does not match"},
		{"root without key", CA{Now: at(t0)}, with(func(r *Root) { r.KeyPEM = "" }), key.Public(), good, ErrInvalidRoot, "no private key"},
		{"root cert is a leaf", CA{Now: at(t0)}, with(func(r *Root) { r.CertPEM = leafPEM }), key.Public(), good, ErrInvalidRoot, "not a CA"},
		{"root cert not PEM", CA{Now: at(t0)}, with(func(r *Root) { r.CertPEM = "nope" }), key.Public(), good, ErrInvalidPEM, "not PEM"},
		{"root trust domain mismatch", CA{Now: at(t0)}, with(func(r *Root) { r.TrustDomain = "other.peerd" }), key.Public(), good, ErrInvalidRoot, "certificate says"},
		{"RSA public key", CA{Now: at(t0)}, root, rsaKey().Public(), good, ErrUnsupportedKey, "RSA key"},
		{"P-384 public key", CA{Now: at(t0)}, root, p384.Public(), good, ErrUnsupportedKey, "P-384"},
		{"nil public key", CA{Now: at(t0)}, root, nil, good, ErrUnsupportedKey, "no key"},
		{"ID of another trust domain", CA{Now: at(t0)}, root, key.Public(), LeafRequest{ID: otherWeb, Client: true}, ErrInvalidRequest, "not in the root's trust domain"},
		{"no SAN", CA{Now: at(t0)}, root, key.Public(), LeafRequest{Server: true}, ErrInvalidRequest, "no SPIFFE ID, DNS name or IP"},
		{"no usage", CA{Now: at(t0)}, root, key.Public(), LeafRequest{ID: web}, ErrInvalidRequest, "neither Server nor Client"},
		{"negative TTL", CA{Now: at(t0)}, root, key.Public(), LeafRequest{ID: web, Client: true, TTL: -time.Second}, ErrInvalidRequest, "negative"},
		{"negative CA leaf TTL", CA{Now: at(t0), LeafTTL: -1}, root, key.Public(), good, ErrInvalidRequest, "negative"},
		{"bad DNS name", CA{Now: at(t0)}, root, key.Public(), LeafRequest{DNSNames: []string{"a..b"}, Server: true}, ErrInvalidName, "DNS SAN"},
		{"bad IP", CA{Now: at(t0)}, root, key.Public(), LeafRequest{IPs: []net.IP{{1, 2, 3}}, Server: true}, ErrInvalidRequest, "IP SAN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.ca.SignLeaf(tt.root, tt.pub, tt.req)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.wantSub) {
				t.Fatalf("got %q, %v; want error wrapping %v mentioning %q", got, err, tt.want, tt.wantSub)
			}
		})
	}
}

func TestPool(t *testing.T) {
	td := testTD(t)
	a, b := newRoot(t, td), newRoot(t, td)
	_, leafPEM, _ := leaf(t, CA{Now: at(t0)}, a, LeafRequest{DNSNames: []string{"x"}, Server: true})
	rsaRoot := encodeCert(selfSigned(t, rsaKey()).Raw)

	if _, err := Pool(a.CertPEM, b.CertPEM+rsaRoot); err != nil {
		t.Errorf("Pool(a, b+RSA bundle): %v", err)
	}
	tests := []struct {
		name    string
		in      []string
		want    error
		wantSub string
	}{
		{"none", nil, ErrInvalidPEM, "no root PEMs"},
		{"second not PEM", []string{a.CertPEM, "junk"}, ErrInvalidPEM, "rootPEMs[1]"},
		{"empty string", []string{""}, ErrInvalidPEM, "rootPEMs[0]"},
		{"key", []string{a.KeyPEM}, ErrInvalidPEM, "rootPEMs[0]"},
		{"leaf in bundle", []string{a.CertPEM, b.CertPEM + leafPEM}, ErrInvalidRoot, "rootPEMs[1]: certificate 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Pool(tt.in...); !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.wantSub) {
				t.Errorf("got %v, want error wrapping %v mentioning %q", err, tt.want, tt.wantSub)
			}
		})
	}
}

func TestVerifyLeaf(t *testing.T) {
	td := testTD(t)
	otherTD := spiffeid.RequireTrustDomainFromString("other.peerd")
	root, otherRoot := newRoot(t, td), newRoot(t, otherTD)
	rootCert, rootKey := mustCert(t, root.CertPEM), mustKey(t, root.KeyPEM)
	ca := CA{Now: at(t0)}
	web, _ := ServiceID(td, "default", "dc1", "web")
	otherWeb, _ := ServiceID(otherTD, "default", "dc1", "web")

	client, _, _ := leaf(t, ca, root, LeafRequest{ID: web, Client: true})
	server, _, _ := leaf(t, ca, root, LeafRequest{ID: web, Server: true})
	dnsOnly, _, _ := leaf(t, ca, root, LeafRequest{DNSNames: []string{"x.y"}, Client: true})
	k, _, _ := NewKey()
	twoURIs := createCert(t, &x509.Certificate{
		URIs:        []*url.URL{web.URL(), spiffeURL(t, "spiffe://"+td.Name()+"/ns/default/dc/dc1/svc/db")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true,
	}, rootCert, k.Public(), rootKey)
	tdURI := createCert(t, &x509.Certificate{
		URIs: []*url.URL{td.ID().URL()}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true,
	}, rootCert, k.Public(), rootKey)
	httpURI := createCert(t, &x509.Certificate{
		URIs: []*url.URL{{Scheme: "https", Host: "example.com", Path: "/x"}}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true,
	}, rootCert, k.Public(), rootKey)
	// The root of td mints an identity of otherTD: refused by the root's
	// name constraints even when otherTD's root is in the pool.
	forged := createCert(t, &x509.Certificate{
		URIs: []*url.URL{otherWeb.URL()}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true,
	}, rootCert, k.Public(), rootKey)
	// A root of td made before roots had name constraints: the
	// trust-domain check refuses the same forgery.
	legacyKey, _, _ := NewKey()
	legacyTmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "legacy"}, BasicConstraintsValid: true, IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, URIs: []*url.URL{td.ID().URL()}}
	legacy := createCert(t, legacyTmpl, legacyTmpl, legacyKey.Public(), legacyKey)
	forgedLegacy := createCert(t, &x509.Certificate{
		URIs: []*url.URL{otherWeb.URL()}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true,
	}, legacy, k.Public(), legacyKey)
	// A CA without a URI SAN vouches for any trust domain.
	plainKey, _, _ := NewKey()
	plainCA := selfSigned(t, plainKey)
	fromPlain := createCert(t, &x509.Certificate{
		URIs: []*url.URL{otherWeb.URL()}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true,
	}, plainCA, k.Public(), plainKey)

	pool := mustPool(t, root.CertPEM)
	both := mustPool(t, root.CertPEM, otherRoot.CertPEM)
	tests := []struct {
		name    string
		chain   []*x509.Certificate
		roots   *x509.CertPool
		now     time.Time
		usage   x509.ExtKeyUsage
		want    spiffeid.ID
		wantSub string
	}{
		{"client", []*x509.Certificate{client}, pool, t0, x509.ExtKeyUsageClientAuth, web, ""},
		{"client with any usage", []*x509.Certificate{client}, pool, t0, x509.ExtKeyUsageAny, web, ""},
		{"server leaf as client", []*x509.Certificate{server}, pool, t0, x509.ExtKeyUsageClientAuth, spiffeid.ID{}, "usage"},
		{"just before expiry", []*x509.Certificate{client}, pool, client.NotAfter, x509.ExtKeyUsageClientAuth, web, ""},
		{"expired", []*x509.Certificate{client}, pool, client.NotAfter.Add(time.Second), x509.ExtKeyUsageClientAuth, spiffeid.ID{}, "expired"},
		{"not yet valid", []*x509.Certificate{client}, pool, client.NotBefore.Add(-time.Second), x509.ExtKeyUsageClientAuth, spiffeid.ID{}, "expired or is not yet valid"},
		{"unknown root", []*x509.Certificate{client}, mustPool(t, otherRoot.CertPEM), t0, x509.ExtKeyUsageClientAuth, spiffeid.ID{}, "unknown authority"},
		{"no URI", []*x509.Certificate{dnsOnly}, pool, t0, x509.ExtKeyUsageClientAuth, spiffeid.ID{}, "no URI SAN"},
		{"two URIs", []*x509.Certificate{twoURIs}, pool, t0, x509.ExtKeyUsageClientAuth, spiffeid.ID{}, "2 URI SANs"},
		{"trust domain URI", []*x509.Certificate{tdURI}, pool, t0, x509.ExtKeyUsageClientAuth, spiffeid.ID{}, "names a trust domain"},
		{"https URI", []*x509.Certificate{httpURI}, pool, t0, x509.ExtKeyUsageClientAuth, spiffeid.ID{}, "not a SPIFFE ID"},
		{"CA as leaf", []*x509.Certificate{rootCert}, pool, t0, x509.ExtKeyUsageAny, spiffeid.ID{}, "is a CA"},
		{"forged other trust domain", []*x509.Certificate{forged}, both, t0, x509.ExtKeyUsageClientAuth, spiffeid.ID{}, "not permitted"},
		{"forged other trust domain, legacy root", []*x509.Certificate{forgedLegacy}, mustPool(t, encodeCert(legacy.Raw), otherRoot.CertPEM), t0, x509.ExtKeyUsageClientAuth, spiffeid.ID{}, "other trust domains"},
		{"CA without URI SAN", []*x509.Certificate{fromPlain}, mustPool(t, encodeCert(plainCA.Raw)), t0, x509.ExtKeyUsageClientAuth, otherWeb, ""},
		{"empty chain", nil, pool, t0, x509.ExtKeyUsageClientAuth, spiffeid.ID{}, "no certificate"},
		{"nil certificate", []*x509.Certificate{client, nil}, pool, t0, x509.ExtKeyUsageClientAuth, spiffeid.ID{}, "certificate 1 is nil"},
		{"nil pool", []*x509.Certificate{client}, nil, t0, x509.ExtKeyUsageClientAuth, spiffeid.ID{}, "nil root pool"},
		{"zero time", []*x509.Certificate{client}, pool, time.Time{}, x509.ExtKeyUsageClientAuth, spiffeid.ID{}, "zero verification time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := VerifyLeaf(tt.chain, tt.roots, tt.now, tt.usage)
			if tt.wantSub != "" {
				if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), tt.wantSub) {
					t.Fatalf("got %v, %v; want ErrVerify mentioning %q", got, err, tt.wantSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	td := testTD(t)
	ca := CA{Now: at(t0)}
	old := newRoot(t, td)
	newer, err := CA{Now: at(t0.Add(time.Hour))}.NewRoot(td)
	if err != nil {
		t.Fatal(err)
	}
	crossPEM, err := CA{Now: at(t0.Add(time.Hour))}.CrossSign(newer, old)
	if err != nil {
		t.Fatal(err)
	}
	newer.CrossSignedPEM = crossPEM
	oldCert, newCert, cross := mustCert(t, old.CertPEM), mustCert(t, newer.CertPEM), mustCert(t, crossPEM)

	checks := []struct {
		what      string
		got, want any
	}{
		{"IsCA", cross.IsCA, true},
		{"MaxPathLen", cross.MaxPathLen, 0},
		{"MaxPathLenZero", cross.MaxPathLenZero, true},
		{"Subject", cross.RawSubject, newCert.RawSubject},
		{"Issuer", cross.RawIssuer, oldCert.RawSubject},
		{"SubjectKeyId", cross.SubjectKeyId, newCert.SubjectKeyId},
		{"AuthorityKeyId", hex.EncodeToString(cross.AuthorityKeyId), old.ID},
		{"URI SANs", urlStrings(cross.URIs), []string{"spiffe://" + td.Name()}},
		{"NotBefore", cross.NotBefore, t0.Add(time.Hour - time.Minute)},
		{"NotAfter", cross.NotAfter, oldCert.NotAfter}, // the old root ends first
	}
	for _, ch := range checks {
		if !equal(ch.got, ch.want) {
			t.Errorf("cross-signed %s: got %v, want %v", ch.what, ch.got, ch.want)
		}
	}
	if !cross.PublicKey.(*ecdsa.PublicKey).Equal(newCert.PublicKey) {
		t.Error("cross-signed certificate does not carry the new root's key")
	}
	if err := cross.CheckSignatureFrom(oldCert); err != nil {
		t.Errorf("cross-signed certificate not signed by the old root: %v", err)
	}

	web, _ := ServiceID(td, "default", "dc1", "web")
	oldLeaf, _, _ := leaf(t, ca, old, LeafRequest{ID: web, Client: true})
	newLeaf, _, _ := leaf(t, CA{Now: at(t0.Add(time.Hour))}, newer, LeafRequest{ID: web, Client: true})
	now := t0.Add(2 * time.Hour)
	onlyOld, onlyNew, both := mustPool(t, old.CertPEM), mustPool(t, newer.CertPEM), mustPool(t, old.CertPEM, newer.CertPEM)
	tests := []struct {
		name   string
		chain  []*x509.Certificate
		roots  *x509.CertPool
		wantOK bool
	}{
		{"new leaf + cross, trusts old only", []*x509.Certificate{newLeaf, cross}, onlyOld, true},
		{"new leaf alone, trusts old only", []*x509.Certificate{newLeaf}, onlyOld, false},
		{"new leaf + cross, trusts new only", []*x509.Certificate{newLeaf, cross}, onlyNew, true},
		{"new leaf, trusts both", []*x509.Certificate{newLeaf}, both, true},
		{"old leaf, trusts both", []*x509.Certificate{oldLeaf}, both, true},
		{"old leaf, trusts old only", []*x509.Certificate{oldLeaf}, onlyOld, true},
		{"old leaf, trusts new only", []*x509.Certificate{oldLeaf}, onlyNew, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := VerifyLeaf(tt.chain, tt.roots, now, x509.ExtKeyUsageClientAuth)
			if tt.wantOK && (err != nil || id != web) {
				t.Errorf("got %v, %v; want %v", id, err, web)
			}
			if !tt.wantOK && !errors.Is(err, ErrVerify) {
				t.Errorf("got %v, %v; want ErrVerify", id, err)
			}
		})
	}
}

func TestCrossSignErrors(t *testing.T) {
	td := testTD(t)
	old, newer := newRoot(t, td), newRoot(t, td)
	oldCert := mustCert(t, old.CertPEM)
	web, _ := ServiceID(td, "default", "dc1", "web")
	_, leafPEM, _ := leaf(t, CA{Now: at(t0)}, old, LeafRequest{ID: web, Client: true})
	noKey := old
	noKey.KeyPEM = ""
	notCA := newer
	notCA.CertPEM = leafPEM
	nearEnd := oldCert.NotAfter.Add(-time.Hour)
	late, err := CA{Now: at(nearEnd)}.NewRoot(td)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		ca         CA
		newR, oldR Root
		want       error
		wantSub    string
	}{
		{"old root without key", CA{Now: at(t0)}, newer, noKey, ErrInvalidRoot, "old root"},
		{"old root expired", CA{Now: at(oldCert.NotAfter.Add(time.Second))}, late, old, ErrExpired, "old root"},
		{"same root", CA{Now: at(t0)}, old, old, ErrInvalidRoot, "share a key"},
		{"new root not a CA", CA{Now: at(t0)}, notCA, old, ErrInvalidRoot, "new root"},
		{"new root not PEM", CA{Now: at(t0)}, Root{CertPEM: "x"}, old, ErrInvalidPEM, "new root"},
		{"negative TTL", CA{Now: at(t0), RootTTL: -1}, newer, old, ErrInvalidRequest, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := tt.ca.CrossSign(tt.newR, tt.oldR); !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.wantSub) {
				t.Errorf("got %q, %v; want error wrapping %v mentioning %q", got, err, tt.want, tt.wantSub)
			}
		})
	}
}

func TestNeedsRenewal(t *testing.T) {
	td := testTD(t)
	root := newRoot(t, td)
	web, _ := ServiceID(td, "default", "dc1", "web")
	c, _, _ := leaf(t, CA{Now: at(t0)}, root, LeafRequest{ID: web, Client: true})
	half := c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2)
	tests := []struct {
		name string
		cert *x509.Certificate
		now  time.Time
		want bool
	}{
		{"fresh", c, t0, false},
		{"just before half", c, half.Add(-time.Nanosecond), false},
		{"at half", c, half, true},
		{"expired", c, c.NotAfter.Add(time.Hour), true},
		{"nil", nil, t0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NeedsRenewal(tt.cert, tt.now); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func mustPool(t *testing.T, pems ...string) *x509.CertPool {
	t.Helper()
	p, err := Pool(pems...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func urlStrings(us []*url.URL) []string {
	var s []string
	for _, u := range us {
		s = append(s, u.String())
	}
	return s
}

func ipStrings(ips []net.IP) []string {
	var s []string
	for _, ip := range ips {
		s = append(s, ip.String())
	}
	return s
}

// equal compares the values the tests check: times by instant, byte and
// string slices by content (nil equals empty), the rest with ==.
func equal(a, b any) bool {
	switch a := a.(type) {
	case time.Time:
		b, ok := b.(time.Time)
		return ok && a.Equal(b)
	case []byte:
		b, ok := b.([]byte)
		return ok && bytes.Equal(a, b)
	case []string:
		b, ok := b.([]string)
		return ok && slices.Equal(a, b)
	case []x509.ExtKeyUsage:
		b, ok := b.([]x509.ExtKeyUsage)
		return ok && slices.Equal(a, b)
	default:
		return a == b
	}
}

// TestRootNameConstraints signs, with a root's key but outside SignLeaf's
// rules, leaves naming what the root must not vouch for, and checks that
// verification (VerifyLeaf, and crypto/x509 with a host name as a peer
// dialing the peering server does) refuses them, through the root and
// through its successor's cross-signed certificate; the names peerd uses
// keep verifying.
func TestRootNameConstraints(t *testing.T) {
	td := testTD(t)
	old := newRoot(t, td)
	ca := CA{Now: at(t0)}
	next, err := ca.NewRoot(td)
	if err != nil {
		t.Fatal(err)
	}
	if next.CrossSignedPEM, err = ca.CrossSign(next, old); err != nil {
		t.Fatal(err)
	}
	k, _, _ := NewKey()
	web, _ := ServiceID(td, "default", "dc1", "web")
	forge := func(r Root, uri string, dns []string, ips []net.IP) *x509.Certificate {
		t.Helper()
		tmpl := &x509.Certificate{DNSNames: dns, IPAddresses: ips, BasicConstraintsValid: true,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
		if uri != "" {
			tmpl.URIs = []*url.URL{spiffeURL(t, uri)}
		}
		return createCert(t, tmpl, mustCert(t, r.CertPEM), k.Public(), mustKey(t, r.KeyPEM))
	}
	oldPool := mustPool(t, old.CertPEM)
	cross := mustCert(t, next.CrossSignedPEM)
	for _, tc := range []struct {
		name string
		uri  string
		dns  []string
		ips  []net.IP
		ok   bool
	}{
		{"service of the trust domain", web.String(), nil, nil, true},
		{"peering server name", web.String(), []string{ServerName("dc1", td)}, nil, true},
		{"SNI of a service", web.String(), []string{InternalSNI("web", "default", "dc1", td)}, nil, true},
		{"another trust domain", "spiffe://other.peerd/ns/default/dc/dc1/svc/web", nil, nil, false},
		{"a suffix of the trust domain", "spiffe://x" + td.Name() + "/ns/default/dc/dc1/svc/web", nil, nil, false},
		{"a public DNS name", web.String(), []string{"www.example.com"}, nil, false},
		{"a wildcard outside the trust domain", web.String(), []string{"*.com"}, nil, false},
		{"an IP", web.String(), nil, []net.IP{net.ParseIP("127.0.0.1")}, false},
		{"an IPv6 address", web.String(), nil, []net.IP{net.ParseIP("::1")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []struct {
				name  string
				chain []*x509.Certificate
			}{
				{"root", []*x509.Certificate{forge(old, tc.uri, tc.dns, tc.ips)}},
				{"cross-signed successor", []*x509.Certificate{forge(next, tc.uri, tc.dns, tc.ips), cross}},
			} {
				_, err := VerifyLeaf(path.chain, oldPool, t0, x509.ExtKeyUsageClientAuth)
				if tc.ok != (err == nil) {
					t.Errorf("%s: VerifyLeaf: %v, want ok=%v", path.name, err, tc.ok)
				}
				if tc.ok && len(tc.dns) > 0 {
					inter := x509.NewCertPool()
					for _, c := range path.chain[1:] {
						inter.AddCert(c)
					}
					_, err := path.chain[0].Verify(x509.VerifyOptions{DNSName: tc.dns[0], Roots: oldPool, Intermediates: inter, CurrentTime: t0})
					if err != nil {
						t.Errorf("%s: host name verification of %s: %v", path.name, tc.dns[0], err)
					}
				}
			}
		})
	}
}
