//go:build linux

package l7

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/internal/identity"
)

// NginxPKI is the certificate material of the nginx baseline, minted with
// internal/identity as two peered clusters would have it: cluster A (the
// caller, dc-a) and cluster B (the exporter, dc-b), each with its own root
// and trust domain <uuid>.peerd. All paths are PEM files.
type NginxPKI struct {
	TrustDomainA, TrustDomainB spiffeid.TrustDomain
	// RootA and RootB are the two roots' certificates.
	RootA, RootB string
	// ClientCert and ClientKey: nginx #1's upstream client certificate,
	// signed by root A, with the URI SAN ClientID (service web in dc-a) and
	// client authentication only: what peerd A presents for web.
	ClientCert, ClientKey string
	ClientID              spiffeid.ID
	// ServerCert and ServerKey: nginx #2's server certificate, signed by
	// root B, with the URI SAN ServerID (service billing in dc-b) and the
	// DNS SAN SNI, server authentication only.
	ServerCert, ServerKey string
	ServerID              spiffeid.ID
	// SNI is the name nginx #1 sends and verifies: billing's peered SNI as
	// cluster B computes it for its peer "cluster-a".
	SNI string
}

// MintNginxPKI creates two roots and the two leaves in dir.
func MintNginxPKI(dir string) (*NginxPKI, error) {
	var ca identity.CA
	p := &NginxPKI{}
	var err error
	if p.TrustDomainA, err = randomTrustDomain(); err != nil {
		return nil, err
	}
	if p.TrustDomainB, err = randomTrustDomain(); err != nil {
		return nil, err
	}
	rootA, err := ca.NewRoot(p.TrustDomainA)
	if err != nil {
		return nil, err
	}
	rootB, err := ca.NewRoot(p.TrustDomainB)
	if err != nil {
		return nil, err
	}
	if p.ClientID, err = identity.ServiceID(p.TrustDomainA, identity.DefaultNamespace, "dc-a", "web"); err != nil {
		return nil, err
	}
	if p.ServerID, err = identity.ServiceID(p.TrustDomainB, identity.DefaultNamespace, "dc-b", "billing"); err != nil {
		return nil, err
	}
	p.SNI = identity.PeeredSNI("billing", "", "", "cluster-a", p.TrustDomainB)
	if err := identity.ValidateDNSName(p.SNI); err != nil {
		return nil, err
	}

	write := func(name, data string) (string, error) {
		path := filepath.Join(dir, name)
		return path, os.WriteFile(path, []byte(data), 0o600)
	}
	leaf := func(root identity.Root, req identity.LeafRequest, name string) (certPath, keyPath string, err error) {
		key, keyPEM, err := identity.NewKey()
		if err != nil {
			return "", "", err
		}
		certPEM, err := ca.SignLeaf(root, key.Public(), req)
		if err != nil {
			return "", "", fmt.Errorf("%s: %w", name, err)
		}
		if certPath, err = write(name+".pem", certPEM); err != nil {
			return "", "", err
		}
		keyPath, err = write(name+"-key.pem", keyPEM)
		return certPath, keyPath, err
	}
	if p.RootA, err = write("root-a.pem", rootA.CertPEM); err != nil {
		return nil, err
	}
	if p.RootB, err = write("root-b.pem", rootB.CertPEM); err != nil {
		return nil, err
	}
	if p.ClientCert, p.ClientKey, err = leaf(rootA, identity.LeafRequest{ID: p.ClientID, Client: true}, "client-web"); err != nil {
		return nil, err
	}
	if p.ServerCert, p.ServerKey, err = leaf(rootB, identity.LeafRequest{ID: p.ServerID, DNSNames: []string{p.SNI}, Server: true}, "server-billing"); err != nil {
		return nil, err
	}
	return p, nil
}

// randomTrustDomain returns <random UUID v4>.peerd.
func randomTrustDomain() (spiffeid.TrustDomain, error) {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return spiffeid.TrustDomain{}, err
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return identity.TrustDomain(fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]))
}
