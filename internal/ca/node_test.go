package ca

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/internal/identity"
)

func TestSeedBootstrap(t *testing.T) {
	seed, err := NewSeed(clock)
	if err != nil {
		t.Fatal(err)
	}
	st := &memStore{}
	c := newCA(t, Config{Store: st, Seed: &seed})
	if err := c.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	root, _, err := c.ActiveRoot()
	if err != nil {
		t.Fatal(err)
	}
	if st.ClusterID() != seed.ClusterID || root.ID != seed.Root.ID {
		t.Fatalf("bootstrap made its own CA (%s, %s) instead of the seed's (%s, %s)", st.ClusterID(), root.ID, seed.ClusterID, seed.Root.ID)
	}
}

func TestSignNode(t *testing.T) {
	c, _ := bootstrapped(t)
	td, err := c.TrustDomain()
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := identity.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	root, _, _ := c.ActiveRoot()
	a := identity.Agent{TrustDomain: td, Role: identity.RoleClient, Datacenter: "dc1", Node: "c1"}
	leaf, err := c.SignNode(context.Background(), NodeRequest{PublicKey: key.Public(), Agent: a, TTL: 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	id, err := verify(t, leaf.ChainPEM, root.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := identity.ParseAgentID(id); err != nil || got != a {
		t.Fatalf("signed %s (%v), want %s", id, err, a)
	}
	cert, err := identity.ParseCertPEM(leaf.ChainPEM)
	if err != nil {
		t.Fatal(err)
	}
	if life := cert.NotAfter.Sub(now); life > DefaultNodeTTL {
		t.Fatalf("node certificate lives %v, above the cap %v", life, DefaultNodeTTL)
	}

	other := a
	other.TrustDomain = spiffeid.RequireTrustDomainFromString("elsewhere.peerd")
	if _, err := c.SignNode(context.Background(), NodeRequest{PublicKey: key.Public(), Agent: other}); !errors.Is(err, ErrRefused) {
		t.Fatalf("signed a node of another trust domain: %v", err)
	}
	// A node certificate's ID is never signed as a leaf: SignLeaf has no
	// caller to check it against.
	id, _ = a.ID()
	if _, err := c.Sign(context.Background(), LeafRequest{PublicKey: key.Public(), ID: id, Client: true}); !errors.Is(err, ErrRefused) {
		t.Fatalf("SignLeaf signed an agent identity: %v", err)
	}
}
