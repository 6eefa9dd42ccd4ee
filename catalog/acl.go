package catalog

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/peerd/peerd/catalog/state"
)

// ACLConfig is the ACL system's cluster side.
type ACLConfig struct {
	// Enabled makes the leader keep the builtins in the state.
	Enabled bool
	// InitialManagement is Consul's acl.tokens.initial_management: the
	// SecretID (a UUID) of a management token the leader makes sure
	// exists. Making it counts as the bootstrap. "" = none.
	InitialManagement string
}

// NewManagementToken returns a token linked to the global-management
// policy, with a new AccessorID and the given secret ("" = a new one).
func NewManagementToken(secret, description string, now time.Time) *state.ACLToken {
	if secret == "" {
		secret = uuid.NewString()
	}
	return &state.ACLToken{
		AccessorID: uuid.NewString(), SecretID: secret, Description: description,
		Policies:   []state.ACLLink{{ID: state.ACLManagementPolicyID}},
		CreateTime: now.UTC(),
	}
}

// ACLBootstrap applies Consul's one-time bootstrap: a new management
// token, unless the state says bootstrap already happened (a
// *state.ACLBootstrapDoneError crosses raft as an *ApplyError whose text
// starts with "ACL bootstrap no longer allowed"). resetIndex is the reset
// index an operator wrote to allow another (0 = none); secret is the
// SecretID to give the token ("" = a new one). The FSM decides, so of two
// racing bootstraps exactly one wins.
func (c *Cluster) ACLBootstrap(ctx context.Context, secret string, resetIndex uint64) (*state.ACLToken, error) {
	tok := NewManagementToken(secret, "Bootstrap Token (Global Management)", time.Now())
	_, err := c.Apply(ctx, &Command{Type: CmdACL, ACL: &state.ACLRequest{Bootstrap: &state.ACLBootstrapRequest{Token: tok, ResetIndex: resetIndex}}})
	if err != nil {
		return nil, err
	}
	return tok, nil
}

// aclReapInterval is how often the leader deletes expired tokens.
const aclReapInterval = time.Minute

// aclLeader is the leader's ACL routine: it makes sure the builtin
// policy, the anonymous token and the initial management token exist,
// retrying until they do, then deletes expired tokens every
// aclReapInterval (they resolve to "ACL not found" from their expiry on
// anyway), until the leadership ends. It never overwrites what an
// operator changed (the anonymous token's policies, say).
func (c *Cluster) aclLeader(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for {
		err := c.ensureACLBuiltins(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("create the ACL builtins; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	tick := time.NewTicker(aclReapInterval)
	defer tick.Stop()
	for {
		if err := c.reapExpiredTokens(ctx, time.Now()); err != nil && ctx.Err() == nil {
			c.log.Warn("delete expired ACL tokens; at the next pass again", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// reapExpiredTokens deletes the tokens expired at now.
func (c *Cluster) reapExpiredTokens(ctx context.Context, now time.Time) error {
	_, list, err := c.store.ACLTokens(nil, state.ACLTokenFilter{})
	if err != nil {
		return err
	}
	for _, t := range list {
		if !t.Expired(now) {
			continue
		}
		if _, err := c.Apply(ctx, &Command{Type: CmdACL, ACL: &state.ACLRequest{DeleteToken: t.AccessorID}}); err != nil {
			return fmt.Errorf("delete expired token %s: %w", t.AccessorID, err)
		}
		c.log.Info("ACL system: deleted an expired token", "accessor", t.AccessorID)
	}
	return nil
}

func (c *Cluster) ensureACLBuiltins(ctx context.Context) error {
	s := c.store
	apply := func(what string, req *state.ACLRequest) error {
		if _, err := c.Apply(ctx, &Command{Type: CmdACL, ACL: req}); err != nil {
			return fmt.Errorf("write %s: %w", what, err)
		}
		c.log.Info("ACL system: wrote " + what)
		return nil
	}
	if _, p, err := s.ACLPolicy(nil, state.ACLManagementPolicyID, false); err != nil {
		return err
	} else if p == nil {
		if err := apply("the builtin global-management policy", &state.ACLRequest{Policy: &state.ACLPolicy{
			ID: state.ACLManagementPolicyID, Name: state.ACLManagementPolicyName,
			Description: "Builtin Policy that grants unlimited access", Rules: state.ACLManagementRules,
		}}); err != nil {
			return err
		}
	}
	if _, t, err := s.ACLToken(nil, state.ACLAnonymousTokenID); err != nil {
		return err
	} else if t == nil {
		if err := apply("the anonymous token", &state.ACLRequest{Token: &state.ACLTokenRequest{Create: true, Token: &state.ACLToken{
			AccessorID: state.ACLAnonymousTokenID, SecretID: state.ACLAnonymousSecret,
			Description: "Anonymous Token", CreateTime: time.Now().UTC(),
		}}}); err != nil {
			return err
		}
	}
	secret := c.cfg.ACL.InitialManagement
	if secret == "" {
		return nil
	}
	if _, t, err := s.ACLTokenBySecret(nil, secret); err != nil {
		return err
	} else if t != nil {
		return nil
	}
	tok := NewManagementToken(secret, "Initial Management Token", time.Now())
	if s.ACLBootstrapRecord() == nil {
		// The bootstrap's own entry: it makes the token and closes
		// PUT /v1/acl/bootstrap in one write.
		return apply("the initial management token (as the bootstrap)", &state.ACLRequest{Bootstrap: &state.ACLBootstrapRequest{Token: tok}})
	}
	return apply("the initial management token", &state.ACLRequest{Token: &state.ACLTokenRequest{Create: true, Token: tok}})
}
