package admission

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/ca"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/internal/jointoken"
	"github.com/peerd/peerd/internal/seal"
)

// Bootstrap is a cluster's trust made before any of its nodes runs
// (`peerd trust init`): for deployments whose nodes all start at once,
// such as a Kubernetes StatefulSet, where no server exists yet to issue
// join tokens. The first server (FirstNode) starts from it: it takes the
// CA and the secrets key from it and, once it leads, records its tokens,
// so that the other nodes, started with those tokens, are admitted.
type Bootstrap struct {
	// FirstNode is the node name of the server that bootstraps the cluster.
	FirstNode  string
	Datacenter string
	Seed       ca.Seed
	SecretsKey string
	GossipKey  string `json:",omitempty"`
	// Tokens are the records of the join tokens made with it.
	Tokens []state.JoinToken
}

// NewBootstrap makes a cluster's CA, secrets key and two join tokens, one
// for servers and one for clients, valid for ttl; servers are the admission
// addresses the tokens list (the first server's, at least).
func NewBootstrap(firstNode, datacenter string, servers []string, gossipKey string, ttl time.Duration, now time.Time) (Bootstrap, string, string, error) {
	if firstNode == "" {
		return Bootstrap{}, "", "", errors.New("trust init: name the first server's node (-first-server)")
	}
	seed, err := ca.NewSeed(func() time.Time { return now })
	if err != nil {
		return Bootstrap{}, "", "", err
	}
	root, err := identity.ParseCertPEM(seed.Root.CertPEM)
	if err != nil {
		return Bootstrap{}, "", "", err
	}
	key, err := seal.NewKey()
	if err != nil {
		return Bootstrap{}, "", "", err
	}
	b := Bootstrap{FirstNode: firstNode, Datacenter: datacenter, Seed: seed, SecretsKey: key.String(), GossipKey: gossipKey}
	var out []string
	for _, role := range []string{jointoken.RoleServer, jointoken.RoleClient} {
		tok, err := jointoken.New(role, datacenter, jointoken.Pin(root), servers, gossipKey, now, ttl)
		if err != nil {
			return Bootstrap{}, "", "", fmt.Errorf("trust init: %w", err)
		}
		b.Tokens = append(b.Tokens, row(tok.Record("made by peerd trust init", now)))
		out = append(out, tok.String())
	}
	return b, out[0], out[1], nil
}

// LoadBootstrap reads a Bootstrap file; like the node identity it must be
// readable by its owner only.
func LoadBootstrap(path string) (Bootstrap, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Bootstrap{}, fmt.Errorf("trust bootstrap: %w", err)
	}
	// Group read is allowed: a Kubernetes Secret is mounted for the pod's
	// fsGroup (0440). Others must not read it.
	if st.Mode().Perm()&0o007 != 0 {
		return Bootstrap{}, fmt.Errorf("trust bootstrap: %s is mode %v: it holds the cluster's CA key; run `chmod 600 %s`", path, st.Mode().Perm(), path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return Bootstrap{}, fmt.Errorf("trust bootstrap: %w", err)
	}
	var b Bootstrap
	if err := json.Unmarshal(raw, &b); err != nil {
		return Bootstrap{}, fmt.Errorf("trust bootstrap %s: %w", path, err)
	}
	if b.FirstNode == "" || b.Seed.ClusterID == "" || b.Seed.Root.KeyPEM == "" || b.SecretsKey == "" {
		return Bootstrap{}, fmt.Errorf("trust bootstrap %s: incomplete (make it with `peerd trust init`)", path)
	}
	return b, nil
}

// Save writes b to path, 0600.
func (b Bootstrap) Save(path string) error {
	raw, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, raw, 0o600)
}
