package admission

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/peerd/peerd/internal/ca"
)

// Material is what a node keeps of its admission: its certificate and key,
// the cluster's roots, and what it needs to join gossip.
type Material struct {
	CertPEM     string
	KeyPEM      string
	RootPEMs    []string
	GossipKey   string   `json:",omitempty"`
	GossipAddrs []string `json:",omitempty"`
	// SecretsKey (servers only) seals the raft log and snapshots at rest
	// (seal.Key's String form).
	SecretsKey string `json:",omitempty"`
	// Seed is the CA a first server made before raft held one; kept until
	// raft has it, so a restart before the first election keeps the CA.
	Seed *ca.Seed `json:",omitempty"`
}

// file is where Material lives in the data directory.
const file = "node-identity.json"

// Path is the file Save writes in dir.
func Path(dir string) string { return filepath.Join(dir, file) }

// Save writes m to dir (created 0700), readable by the owner only (0600),
// replacing the file atomically.
func (m Material) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save node identity: %w", err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("save node identity: %w", err)
	}
	tmp, err := os.CreateTemp(dir, file+".*")
	if err != nil {
		return fmt.Errorf("save node identity: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("save node identity: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save node identity: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save node identity: %w", err)
	}
	if err := os.Rename(tmp.Name(), Path(dir)); err != nil {
		return fmt.Errorf("save node identity: %w", err)
	}
	return nil
}

// Load reads the Material Save wrote; ok is false when there is none. A
// file others may read is refused: it holds the node's private key.
func Load(dir string) (m Material, ok bool, err error) {
	p := Path(dir)
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Material{}, false, nil
	}
	if err != nil {
		return Material{}, false, fmt.Errorf("load node identity: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return Material{}, false, fmt.Errorf("load node identity: %s is mode %v: it holds the node's private key; run `chmod 600 %s`", p, st.Mode().Perm(), p)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return Material{}, false, fmt.Errorf("load node identity: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return Material{}, false, fmt.Errorf("load node identity from %s: %w", p, err)
	}
	if m.CertPEM == "" || m.KeyPEM == "" || len(m.RootPEMs) == 0 {
		return Material{}, false, fmt.Errorf("load node identity from %s: certificate, key or roots missing (delete the file and join again with -join-token)", p)
	}
	return m, true, nil
}
