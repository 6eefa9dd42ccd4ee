package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/internal/identity"
)

// The API certificate verifies as a TLS server certificate for the
// cluster's API names, never for an address or a name outside the trust
// domain, and is no client certificate.
func TestSignAPI(t *testing.T) {
	c, _ := bootstrapped(t)
	td, err := c.TrustDomain()
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := identity.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	a := identity.Agent{TrustDomain: td, Role: identity.RoleClient, Datacenter: "dc1", Node: "Web-1"}
	leaf, err := c.SignAPI(context.Background(), APIRequest{PublicKey: key.Public(), Agent: a})
	if err != nil {
		t.Fatal(err)
	}
	root, _, _ := c.ActiveRoot()
	rootCert, err := identity.ParseCertPEM(root.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := identity.ParseCertPEM(leaf.ChainPEM)
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.URIs) != 0 {
		t.Errorf("got URI SANs %v, want none: the API certificate is no mesh identity", cert.URIs)
	}
	pool := x509.NewCertPool()
	pool.AddCert(rootCert)
	opts := func(name string, usage x509.ExtKeyUsage) x509.VerifyOptions {
		return x509.VerifyOptions{DNSName: name, Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}
	}
	for _, name := range []string{"api." + td.Name(), "web-1.node.api." + td.Name()} {
		if _, err := cert.Verify(opts(name, x509.ExtKeyUsageServerAuth)); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	for _, name := range []string{"127.0.0.1", "localhost", "api.other.peerd", "server.dc1.peering." + td.Name()} {
		if _, err := cert.Verify(opts(name, x509.ExtKeyUsageServerAuth)); err == nil {
			t.Errorf("verify for %s: got no error", name)
		}
	}
	if _, err := cert.Verify(opts("", x509.ExtKeyUsageClientAuth)); err == nil {
		t.Error("verify as a client certificate: got no error")
	}

	other := identity.Agent{TrustDomain: spiffeid.RequireTrustDomainFromString("0b3c8d6e-0000-4000-8000-000000000000.peerd"), Role: identity.RoleClient, Datacenter: "dc1", Node: "x"}
	if _, err := c.SignAPI(context.Background(), APIRequest{PublicKey: key.Public(), Agent: other}); !errors.Is(err, ErrRefused) {
		t.Errorf("another trust domain: got %v, want ErrRefused", err)
	}
}
