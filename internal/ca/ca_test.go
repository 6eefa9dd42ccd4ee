package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/internal/identity"
)

// memStore is a Store in memory that counts its writes and can fail them.
type memStore struct {
	mu        sync.Mutex
	clusterID string
	roots     []Root
	writes    int
	failRoots error // returned by Roots
	failWrite error // returned by WriteRoots
}

func (m *memStore) ClusterID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.clusterID
}

func (m *memStore) SetClusterID(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes++
	if m.clusterID == "" {
		m.clusterID = id
	}
	return nil
}

func (m *memStore) Roots() ([]Root, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.roots), m.failRoots
}

func (m *memStore) WriteRoots(_ context.Context, roots []Root) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failWrite != nil {
		return m.failWrite
	}
	m.writes++
	m.roots = slices.Clone(roots)
	return nil
}

var now = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func clock() time.Time { return now }

func newCA(t testing.TB, cfg Config) *CA {
	t.Helper()
	cfg.Now = clock
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// bootstrapped returns a CA over a store that Bootstrap has filled.
func bootstrapped(t testing.TB) (*CA, *memStore) {
	t.Helper()
	st := &memStore{}
	c := newCA(t, Config{Store: st})
	if err := c.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c, st
}

// leafRequest is a client and server leaf for web in td, with a fresh key.
func leafRequest(t *testing.T, td spiffeid.TrustDomain) LeafRequest {
	t.Helper()
	key, _, err := identity.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.ServiceID(td, "default", "dc1", "web")
	if err != nil {
		t.Fatal(err)
	}
	return LeafRequest{PublicKey: key.Public(), ID: id, Server: true, Client: true}
}

// verify checks chainPEM against the roots in rootPEMs and returns the
// leaf's SPIFFE ID.
func verify(t *testing.T, chainPEM string, rootPEMs ...string) (spiffeid.ID, error) {
	t.Helper()
	chain, err := identity.ParseCertsPEM(chainPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := identity.Pool(rootPEMs...)
	if err != nil {
		t.Fatal(err)
	}
	return identity.VerifyLeaf(chain, pool, now, x509.ExtKeyUsageClientAuth)
}

func TestNewNeedsStoreOrForward(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without Store or Forward: got nil error, want one")
	}
}

func TestBeforeBootstrap(t *testing.T) {
	c := newCA(t, Config{Store: &memStore{}})
	if _, err := c.TrustDomain(); !errors.Is(err, ErrNoCA) {
		t.Errorf("TrustDomain: got %v, want ErrNoCA", err)
	}
	if _, _, err := c.ActiveRoot(); !errors.Is(err, ErrNoCA) {
		t.Errorf("ActiveRoot: got %v, want ErrNoCA", err)
	}
	td := spiffeid.RequireTrustDomainFromString("x.peerd")
	if _, err := c.Sign(context.Background(), leafRequest(t, td)); !errors.Is(err, ErrNoCA) || !strings.HasPrefix(err.Error(), "sign leaf ") {
		t.Errorf("Sign: got %v, want ErrNoCA after \"sign leaf \"", err)
	}
	if _, err := c.Rotate(context.Background()); !errors.Is(err, ErrNoCA) || !strings.HasPrefix(err.Error(), "rotate CA: ") {
		t.Errorf("Rotate: got %v, want ErrNoCA after \"rotate CA: \"", err)
	}
}

func TestBootstrap(t *testing.T) {
	c, st := bootstrapped(t)
	if st.clusterID == "" {
		t.Fatal("no cluster ID after Bootstrap")
	}
	td, err := c.TrustDomain()
	if err != nil {
		t.Fatal(err)
	}
	if want := st.clusterID + ".peerd"; td.Name() != want {
		t.Errorf("trust domain: got %q, want %q", td.Name(), want)
	}
	if len(st.roots) != 1 || !st.roots[0].Active || st.roots[0].TrustDomain != td.Name() || st.roots[0].KeyPEM == "" {
		t.Fatalf("roots after Bootstrap: got %+v, want one active root of %s with its key", st.roots, td.Name())
	}
	root, pems, err := c.ActiveRoot()
	if err != nil {
		t.Fatal(err)
	}
	if root != st.roots[0].Root || !slices.Equal(pems, []string{root.CertPEM}) {
		t.Errorf("ActiveRoot: got %s and %d PEMs, want the stored root and its PEM", root.ID, len(pems))
	}

	// Again: nothing to write.
	writes := st.writes
	if err := c.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st.writes != writes || len(st.roots) != 1 || st.roots[0].ID != root.ID {
		t.Errorf("second Bootstrap: %d writes, roots %v; want none and the same root", st.writes-writes, st.roots)
	}
}

func TestBootstrapKeepsClusterID(t *testing.T) {
	st := &memStore{clusterID: "0b9d2c5e-1f4a-4c1e-9f3e-7a5b6c7d8e9f"}
	c := newCA(t, Config{Store: st})
	if err := c.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st.clusterID != "0b9d2c5e-1f4a-4c1e-9f3e-7a5b6c7d8e9f" || st.roots[0].TrustDomain != st.clusterID+".peerd" {
		t.Errorf("got cluster ID %q and root of %q, want the existing ID and its trust domain", st.clusterID, st.roots[0].TrustDomain)
	}
}

func TestBootstrapErrors(t *testing.T) {
	boom := errors.New("boom")
	st := &memStore{failRoots: boom}
	if err := newCA(t, Config{Store: st}).Bootstrap(context.Background()); !errors.Is(err, boom) {
		t.Errorf("Roots failing: got %v, want boom", err)
	}
	st = &memStore{failWrite: boom}
	if err := newCA(t, Config{Store: st}).Bootstrap(context.Background()); !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "store CA root: ") {
		t.Errorf("WriteRoots failing: got %v, want boom after \"store CA root: \"", err)
	}
}

func TestKeepBootstrapping(t *testing.T) {
	st := &memStore{}
	c := newCA(t, Config{Store: st})
	c.KeepBootstrapping(context.Background()) // returns once done
	if len(st.roots) != 1 {
		t.Fatalf("got %d roots, want 1", len(st.roots))
	}

	failing := newCA(t, Config{Store: &memStore{failWrite: errors.New("no quorum")}})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() { failing.KeepBootstrapping(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("KeepBootstrapping did not return when its context ended")
	}
}

func TestSign(t *testing.T) {
	c, st := bootstrapped(t)
	td, _ := c.TrustDomain()
	req := leafRequest(t, td)
	leaf, err := c.Sign(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.RootID != st.roots[0].ID {
		t.Errorf("root ID: got %s, want %s", leaf.RootID, st.roots[0].ID)
	}
	if id, err := verify(t, leaf.ChainPEM, st.roots[0].CertPEM); err != nil || id != req.ID {
		t.Errorf("verify: got %v, %v; want %v", id, err, req.ID)
	}
	chain, err := c.SignLeaf(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if certs, _ := identity.ParseCertsPEM(chain); len(certs) != 1 {
		t.Errorf("SignLeaf of a first root: got %d certificates, want the leaf alone", len(certs))
	}
	other := leafRequest(t, spiffeid.RequireTrustDomainFromString("other.peerd"))
	if _, err := c.Sign(context.Background(), other); err == nil || !strings.HasPrefix(err.Error(), "sign leaf "+other.ID.String()+": ") {
		t.Errorf("foreign trust domain: got %v, want an error naming the ID", err)
	}
}

func TestRotate(t *testing.T) {
	c, st := bootstrapped(t)
	first := st.roots[0]
	td, _ := c.TrustDomain()

	second, err := c.Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.roots) != 2 || st.roots[0].ID != second || !st.roots[0].Active ||
		st.roots[1].ID != first.ID || st.roots[1].Active || st.roots[0].CrossSignedPEM == "" {
		t.Fatalf("roots after a rotation: got %+v; want the new root (active, cross-signed), then the first (inactive)", st.roots)
	}
	_, pems, err := c.ActiveRoot()
	if err != nil || !slices.Equal(pems, []string{st.roots[0].CertPEM, first.CertPEM}) {
		t.Errorf("ActiveRoot PEMs: got %d, %v; want the new root's, then the first's", len(pems), err)
	}

	// A leaf of the new root carries the cross-signed certificate, so a
	// peer that trusts only the first root accepts it.
	req := leafRequest(t, td)
	leaf, err := c.Sign(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.RootID != second {
		t.Errorf("signing root: got %s, want %s", leaf.RootID, second)
	}
	for name, root := range map[string]string{"new root": st.roots[0].CertPEM, "first root only": first.CertPEM} {
		if id, err := verify(t, leaf.ChainPEM, root); err != nil || id != req.ID {
			t.Errorf("verify with the %s: got %v, %v; want %v", name, id, err, req.ID)
		}
	}

	// A second rotation drops the first root.
	third, err := c.Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.roots) != 2 || st.roots[0].ID != third || st.roots[1].ID != second {
		t.Errorf("roots after two rotations: got %d (%s first), want the third then the second", len(st.roots), st.roots[0].ID)
	}
}

func TestClientNode(t *testing.T) {
	var got LeafRequest
	boom := errors.New("no server answered")
	fail := false
	c := newCA(t, Config{Forward: func(_ context.Context, req LeafRequest) (SignedLeaf, error) {
		if fail {
			return SignedLeaf{}, boom
		}
		got = req
		return SignedLeaf{ChainPEM: "chain", RootID: "root"}, nil
	}})
	td := spiffeid.RequireTrustDomainFromString("x.peerd")
	req := leafRequest(t, td)
	leaf, err := c.Sign(context.Background(), req)
	if err != nil || leaf != (SignedLeaf{ChainPEM: "chain", RootID: "root"}) || got.ID != req.ID {
		t.Errorf("Sign: got %+v, %v (forwarded %v); want the forwarded leaf of %v", leaf, err, got.ID, req.ID)
	}
	fail = true
	if _, err := c.SignLeaf(context.Background(), req); !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "sign leaf "+req.ID.String()+": ") {
		t.Errorf("forward failing: got %v, want boom after the step", err)
	}
	if _, err := c.TrustDomain(); !errors.Is(err, ErrNoStore) {
		t.Errorf("TrustDomain: got %v, want ErrNoStore", err)
	}
	if _, _, err := c.ActiveRoot(); !errors.Is(err, ErrNoStore) {
		t.Errorf("ActiveRoot: got %v, want ErrNoStore", err)
	}
	if err := c.Bootstrap(context.Background()); !errors.Is(err, ErrNoStore) {
		t.Errorf("Bootstrap: got %v, want ErrNoStore", err)
	}
	if _, err := c.Rotate(context.Background()); !errors.Is(err, ErrNoStore) {
		t.Errorf("Rotate: got %v, want ErrNoStore", err)
	}
}
