package catalog

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/seal"
)

// marker stands for a CA private key in the state.
const marker = "PRIVATE-KEY-MARKER-5d1f"

// aclSecretMarker stands for an ACL token's SecretID.
const aclSecretMarker = "5d1f5d1f-0000-4000-8000-00000000a11c"

func startSealedServer(t *testing.T, key *seal.Key, dir string) *Cluster {
	t.Helper()
	cfg := DevConfig()
	cfg.NodeName, cfg.NodeID = "s1", uuid.NewString()
	cfg.InMemory, cfg.DataDir, cfg.Secrets = false, dir, key
	c, err := newStarted(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSecretsAtRest: with a secrets key, the CA key never reaches the raft
// log, raft's snapshots or a saved snapshot in plaintext; the state reads
// back after a restart, and a saved snapshot restores only with the key.
func TestSecretsAtRest(t *testing.T) {
	key, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := startSealedServer(t, key, dir)
	roots := &state.CARootsRequest{Roots: []*state.CARoot{{ID: "r1", CertPEM: "cert", KeyPEM: marker, TrustDomain: "x.peerd", Active: true}}}
	if _, err := c.Apply(context.Background(), &Command{Type: CmdCARoots, CARoots: roots}); err != nil {
		t.Fatal(err)
	}
	// An ACL token's secret is sealed like the CA key.
	tok := NewManagementToken(aclSecretMarker, "sealed", time.Now())
	tok.Policies = nil
	if _, err := c.Apply(context.Background(), &Command{Type: CmdACL, ACL: &state.ACLRequest{Token: &state.ACLTokenRequest{Create: true, Token: tok}}}); err != nil {
		t.Fatal(err)
	}
	if err := c.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	var saved bytes.Buffer
	if _, err := c.SaveSnapshot(&saved); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	files := 0
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(b, []byte(marker)) {
			t.Errorf("%s holds the CA key in plaintext", p)
		}
		if bytes.Contains(b, []byte(aclSecretMarker)) {
			t.Errorf("%s holds an ACL token's secret in plaintext", p)
		}
		return nil
	})
	if err != nil || files < 2 {
		t.Fatalf("walked %d files: %v", files, err)
	}

	// Restarted with the key, the state is back (the log and snapshot open).
	c2 := startSealedServer(t, key, dir)
	_, got, err := c2.Store().CARoots(nil)
	if err != nil || len(got) != 1 || got[0].KeyPEM != marker {
		t.Fatalf("after restart: %+v, %v", got, err)
	}
	if _, tok, err := c2.Store().ACLTokenBySecret(nil, aclSecretMarker); err != nil || tok == nil {
		t.Fatalf("the ACL token after restart: %+v, %v", tok, err)
	}
	// A restarted server restores only once its configuration entry is
	// applied: retry until raft takes it.
	var rerr error
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, rerr = c2.RestoreSnapshot(bytes.NewReader(saved.Bytes())); rerr == nil {
			break
		}
	}
	if rerr != nil {
		t.Fatalf("restore own snapshot: %v", rerr)
	}

	// Another cluster cannot open it.
	other, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	c3 := startSealedServer(t, other, t.TempDir())
	if _, err := c3.RestoreSnapshot(bytes.NewReader(saved.Bytes())); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("another cluster's key restored the snapshot: %v", err)
	}
}
