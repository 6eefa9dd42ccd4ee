package catalog

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/peerd/peerd/catalog/state"
)

func TestACLConfigValidate(t *testing.T) {
	cfg := DevConfig()
	cfg.NodeName, cfg.NodeID = "n", uuid.NewString()
	cfg.ACL = ACLConfig{Enabled: true, InitialManagement: "hunter2"}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "acl.tokens.initial_management is not a UUID") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("got %v, want a refusal naming the setting and not the secret", err)
	}
	cfg.ACL.InitialManagement = uuid.NewString()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a UUID: %v", err)
	}
}

// TestACLLeaderBuiltinsAndReap: the leader writes the builtins and the
// initial management token (as the bootstrap), and deletes expired tokens.
func TestACLLeaderBuiltinsAndReap(t *testing.T) {
	secret := uuid.NewString()
	cfg := DevConfig()
	cfg.NodeName, cfg.NodeID = "s1", uuid.NewString()
	cfg.ACL = ACLConfig{Enabled: true, InitialManagement: secret}
	c, err := newStarted(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, tok, _ := c.Store().ACLTokenBySecret(nil, secret)
		_, anon, _ := c.Store().ACLToken(nil, state.ACLAnonymousTokenID)
		if tok != nil && anon != nil {
			if len(tok.Policies) != 1 || tok.Policies[0].Name != state.ACLManagementPolicyName {
				t.Fatalf("initial management token %+v", tok)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no builtins and initial management token after 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rec := c.Store().ACLBootstrapRecord(); rec == nil {
		t.Fatal("the initial management token did not count as the bootstrap")
	}
	exp := time.Now().Add(time.Minute)
	tok := &state.ACLToken{AccessorID: uuid.NewString(), SecretID: uuid.NewString(), ExpirationTTL: time.Minute, ExpirationTime: &exp}
	if _, err := c.Apply(context.Background(), &Command{Type: CmdACL, ACL: &state.ACLRequest{Token: &state.ACLTokenRequest{Create: true, Token: tok}}}); err != nil {
		t.Fatal(err)
	}
	if err := c.reapExpiredTokens(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, got, _ := c.Store().ACLToken(nil, tok.AccessorID); got == nil {
		t.Fatal("a token not yet expired was reaped")
	}
	if err := c.reapExpiredTokens(context.Background(), exp); err != nil {
		t.Fatal(err)
	}
	if _, got, _ := c.Store().ACLToken(nil, tok.AccessorID); got != nil {
		t.Fatal("the expired token is still there")
	}
}
