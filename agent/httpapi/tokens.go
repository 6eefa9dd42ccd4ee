package httpapi

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/peerd/peerd/internal/acl"
)

// TokensFile is the file under the data directory that keeps the tokens
// set through PUT /v1/agent/token/* when token persistence is on (0600).
const TokensFile = "acl-tokens.json"

// AgentTokens are the agent's own ACL tokens (Consul's acl.tokens). Each
// is a token's SecretID; "" = unset.
type AgentTokens struct {
	// Default is the token of requests without one, and of DNS unless DNS
	// is set.
	Default string `json:"default,omitempty"`
	// Agent is the token of the agent's own calls.
	Agent string `json:"agent,omitempty"`
	// AgentRecovery works on this agent's /v1/agent/* endpoints even when
	// no server answers (agent:write on this node, node:read).
	AgentRecovery string `json:"agent_recovery,omitempty"`
	// DNS is the token DNS answers with (Consul 1.17's dns token); ""
	// means Default.
	DNS string `json:"dns,omitempty"`
}

// Tokens holds the agent's tokens, changed at run time by
// PUT /v1/agent/token/{kind} and, with a file, kept across restarts. Its
// methods are safe for concurrent use.
type Tokens struct {
	mu   sync.RWMutex
	t    AgentTokens
	file string
}

// NewTokens returns the agent's tokens: those of the configuration, with
// the ones kept in file (when not "") winning, as Consul's persisted
// tokens do. A missing file is no error; an unreadable one is.
func NewTokens(configured AgentTokens, file string) (*Tokens, error) {
	t := &Tokens{t: configured, file: file}
	if file == "" {
		return t, nil
	}
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return t, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the persisted ACL tokens: %w", err)
	}
	var kept AgentTokens
	if err := json.Unmarshal(b, &kept); err != nil {
		return nil, fmt.Errorf("read the persisted ACL tokens %s: %w (fix or delete the file; the configured tokens apply without it)", file, err)
	}
	for _, p := range []struct {
		dst *string
		v   string
	}{
		{&t.t.Default, kept.Default}, {&t.t.Agent, kept.Agent}, {&t.t.AgentRecovery, kept.AgentRecovery}, {&t.t.DNS, kept.DNS},
	} {
		if p.v != "" {
			*p.dst = p.v
		}
	}
	return t, nil
}

// Default returns the token of requests without one.
func (t *Tokens) Default() string {
	if t == nil {
		return ""
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.t.Default
}

// Agent returns the token of the agent's own calls; Consul falls back to
// the default token when none is set, and so does this.
func (t *Tokens) Agent() string {
	if t == nil {
		return ""
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.t.Agent != "" {
		return t.t.Agent
	}
	return t.t.Default
}

// DNS returns the token DNS answers with: the dns token, else the
// default one.
func (t *Tokens) DNS() string {
	if t == nil {
		return ""
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.t.DNS != "" {
		return t.t.DNS
	}
	return t.t.Default
}

// isRecovery reports, in constant time, whether secret is the agent
// recovery token.
func (t *Tokens) isRecovery(secret string) bool {
	if t == nil || secret == "" {
		return false
	}
	t.mu.RLock()
	rec := t.t.AgentRecovery
	t.mu.RUnlock()
	return rec != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(rec)) == 1
}

// tokenKinds maps the kinds of PUT /v1/agent/token/{kind}, Consul's and
// their legacy names, to the field they set.
var tokenKinds = map[string]func(*AgentTokens) *string{
	"default":                func(t *AgentTokens) *string { return &t.Default },
	"acl_token":              func(t *AgentTokens) *string { return &t.Default },
	"agent":                  func(t *AgentTokens) *string { return &t.Agent },
	"acl_agent_token":        func(t *AgentTokens) *string { return &t.Agent },
	"agent_recovery":         func(t *AgentTokens) *string { return &t.AgentRecovery },
	"agent_master":           func(t *AgentTokens) *string { return &t.AgentRecovery },
	"acl_agent_master_token": func(t *AgentTokens) *string { return &t.AgentRecovery },
	"dns":                    func(t *AgentTokens) *string { return &t.DNS },
}

func tokenKindNames() string {
	var names []string
	for k := range tokenKinds {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Set changes one token and, with a file, keeps all of them there (0600,
// written to a temporary file and renamed, so a crash leaves the old file
// or the new one).
func (t *Tokens) Set(kind, secret string) error {
	field, ok := tokenKinds[kind]
	if !ok {
		return errBadRequest("unknown token type %q: use one of %s", kind, tokenKindNames())
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	next := t.t
	*field(&next) = secret
	if t.file != "" {
		if err := writeTokens(t.file, next); err != nil {
			return err
		}
	}
	t.t = next
	return nil
}

func writeTokens(file string, v AgentTokens) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("persist the ACL tokens: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".acl-tokens-*")
	if err != nil {
		return fmt.Errorf("persist the ACL tokens: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("persist the ACL tokens: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("persist the ACL tokens: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("persist the ACL tokens: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("persist the ACL tokens: %w", err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("persist the ACL tokens: %w", err)
	}
	return nil
}

// recoveryEnforcer is what the agent recovery token may do: Consul's
// agent recovery policy, agent:write on this node and node:read on every
// node, decided here without asking a server.
func recoveryEnforcer(node string) (acl.Enforcer, error) {
	p, err := acl.ParseRules(fmt.Sprintf("agent %q { policy = \"write\" }\nnode_prefix \"\" { policy = \"read\" }\n", node))
	if err != nil {
		return acl.Enforcer{}, fmt.Errorf("agent recovery policy: %w", err)
	}
	return acl.Enforcer{Authorizer: acl.Chain(acl.NewPolicyAuthorizer(p), acl.DenyAll()), AccessorID: "agent-recovery-token"}, nil
}

// agentTokenPut is PUT /v1/agent/token/{kind} with {"Token": "<secret>"}:
// Consul's shape, and its permission, acl:write.
func (s *Server) agentTokenPut(w http.ResponseWriter, r *http.Request) (any, error) {
	if _, err := s.require(r, acl.ResourceACL, "", acl.AccessWrite); err != nil {
		return nil, err
	}
	if s.aclTokens == nil {
		return nil, &httpError{code: http.StatusNotImplemented, msg: "this agent keeps no ACL tokens: it was started without a token store"}
	}
	var body struct{ Token string }
	if err := decodeBody(r, &body); err != nil {
		return nil, err
	}
	if err := acl.ValidateSecret(body.Token); err != nil {
		return nil, errBadRequest("Token: %v", err)
	}
	kind := r.PathValue("kind")
	if err := s.aclTokens.Set(kind, body.Token); err != nil {
		return nil, err
	}
	s.log.Info("ACL token updated", "type", kind)
	return nil, nil
}
