package state

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

const (
	polID   = "11111111-0000-4000-8000-000000000001"
	pol2ID  = "11111111-0000-4000-8000-000000000002"
	roleID  = "11111111-0000-4000-8000-000000000003"
	tokID   = "11111111-0000-4000-8000-000000000004"
	tokSec  = "11111111-0000-4000-8000-000000000005"
	tok2ID  = "11111111-0000-4000-8000-000000000006"
	tok2Sec = "11111111-0000-4000-8000-000000000007"
)

func aclApply(t *testing.T, s *Store, idx uint64, req *ACLRequest) {
	t.Helper()
	if err := s.ACLApply(idx, req); err != nil {
		t.Fatalf("acl write %d: %v", idx, err)
	}
}

func aclRefused(t *testing.T, s *Store, req *ACLRequest, want string) {
	t.Helper()
	before := s.ACLIndex()
	err := s.ACLApply(999, req)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error containing %q", err, want)
	}
	if s.ACLIndex() != before {
		t.Fatalf("a refused write changed the ACL index: %d, was %d", s.ACLIndex(), before)
	}
}

func TestACLWritesRefused(t *testing.T) {
	s := newTestStore(t)
	aclApply(t, s, 1, &ACLRequest{Policy: &ACLPolicy{ID: ACLManagementPolicyID, Name: ACLManagementPolicyName, Rules: ACLManagementRules}})
	aclApply(t, s, 2, &ACLRequest{Policy: &ACLPolicy{ID: polID, Name: "web-read", Rules: `service "web" { policy = "read" }`}})
	aclApply(t, s, 3, &ACLRequest{Token: &ACLTokenRequest{Create: true, Token: &ACLToken{AccessorID: ACLAnonymousTokenID, SecretID: ACLAnonymousSecret}}})
	aclApply(t, s, 4, &ACLRequest{Token: &ACLTokenRequest{Create: true, Token: &ACLToken{AccessorID: tokID, SecretID: tokSec, Policies: []ACLLink{{Name: "web-read"}}}}})
	tests := []struct {
		name string
		req  *ACLRequest
		want string
	}{
		{"duplicate policy name", &ACLRequest{Policy: &ACLPolicy{ID: pol2ID, Name: "WEB-read"}}, `A Policy with Name "WEB-read" already exists`},
		{"bad rules", &ACLRequest{Policy: &ACLPolicy{ID: pol2ID, Name: "x", Rules: "service \"web\" {\n policy = \n}"}}, "Failed parsing rules"},
		{"bad policy name", &ACLRequest{Policy: &ACLPolicy{ID: pol2ID, Name: "a b"}}, "policy name"},
		{"policy ID not a UUID", &ACLRequest{Policy: &ACLPolicy{ID: "nope", Name: "x"}}, "not a UUID"},
		{"builtin rules", &ACLRequest{Policy: &ACLPolicy{ID: ACLManagementPolicyID, Name: ACLManagementPolicyName, Rules: `acl = "read"`}}, "builtin global-management"},
		{"builtin delete", &ACLRequest{DeletePolicy: ACLManagementPolicyID}, "builtin global-management"},
		{"anonymous delete", &ACLRequest{DeleteToken: ACLAnonymousTokenID}, "anonymous token"},
		{"unknown policy name", &ACLRequest{Token: &ACLTokenRequest{Create: true, Token: &ACLToken{AccessorID: tok2ID, SecretID: tok2Sec, Policies: []ACLLink{{Name: "nope"}}}}}, `No such ACL policy with name "nope"`},
		{"unknown policy ID", &ACLRequest{Token: &ACLTokenRequest{Create: true, Token: &ACLToken{AccessorID: tok2ID, SecretID: tok2Sec, Policies: []ACLLink{{ID: pol2ID}}}}}, "No such ACL policy with ID"},
		{"unknown role", &ACLRequest{Token: &ACLTokenRequest{Create: true, Token: &ACLToken{AccessorID: tok2ID, SecretID: tok2Sec, Roles: []ACLLink{{Name: "r"}}}}}, "No such ACL role"},
		{"accessor in use", &ACLRequest{Token: &ACLTokenRequest{Create: true, Token: &ACLToken{AccessorID: tokID, SecretID: tok2Sec}}}, "AccessorID is already in use"},
		{"secret in use", &ACLRequest{Token: &ACLTokenRequest{Create: true, Token: &ACLToken{AccessorID: tok2ID, SecretID: tokSec}}}, "SecretID is already in use"},
		{"secret not a UUID", &ACLRequest{Token: &ACLTokenRequest{Create: true, Token: &ACLToken{AccessorID: tok2ID, SecretID: "hunter2"}}}, "SecretID is not a UUID"},
		{"anonymous secret", &ACLRequest{Token: &ACLTokenRequest{Create: true, Token: &ACLToken{AccessorID: tok2ID, SecretID: ACLAnonymousSecret}}}, "anonymous token's"},
		{"TTL too short", &ACLRequest{Token: &ACLTokenRequest{Create: true, Token: &ACLToken{AccessorID: tok2ID, SecretID: tok2Sec, ExpirationTTL: time.Second, ExpirationTime: &time.Time{}}}}, "ExpirationTTL"},
		{"TTL too long", &ACLRequest{Token: &ACLTokenRequest{Create: true, Token: &ACLToken{AccessorID: tok2ID, SecretID: tok2Sec, ExpirationTTL: 25 * time.Hour, ExpirationTime: &time.Time{}}}}, "ExpirationTTL"},
		{"secret changed", &ACLRequest{Token: &ACLTokenRequest{Token: &ACLToken{AccessorID: tokID, SecretID: tok2Sec}}}, "SecretID is not permitted"},
		{"update unknown", &ACLRequest{Token: &ACLTokenRequest{Token: &ACLToken{AccessorID: tok2ID}}}, "cannot find token"},
		{"two fields", &ACLRequest{DeleteRole: roleID, DeleteToken: tokID}, "exactly one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { aclRefused(t, s, tt.req, tt.want) })
	}
	// The secret is never in an error.
	err := s.ACLApply(9, &ACLRequest{Token: &ACLTokenRequest{Create: true, Token: &ACLToken{AccessorID: tok2ID, SecretID: "hunter2-secret"}}})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("got %v, want a refusal that does not repeat the secret", err)
	}
}

func TestACLLinksFollowRenamesAndDeletes(t *testing.T) {
	s := newTestStore(t)
	aclApply(t, s, 1, &ACLRequest{Policy: &ACLPolicy{ID: polID, Name: "a"}})
	aclApply(t, s, 2, &ACLRequest{Policy: &ACLPolicy{ID: pol2ID, Name: "b"}})
	aclApply(t, s, 3, &ACLRequest{Role: &ACLRole{ID: roleID, Name: "r", Policies: []ACLLink{{Name: "b"}}}})
	aclApply(t, s, 4, &ACLRequest{Token: &ACLTokenRequest{Create: true, Token: &ACLToken{AccessorID: tokID, SecretID: tokSec,
		Policies: []ACLLink{{Name: "a"}, {ID: pol2ID}}, Roles: []ACLLink{{Name: "r"}}}}})
	aclApply(t, s, 5, &ACLRequest{Policy: &ACLPolicy{ID: polID, Name: "a-renamed"}})
	_, tok, err := s.ACLToken(nil, tokID)
	if err != nil || tok == nil {
		t.Fatalf("read token: %v %v", tok, err)
	}
	if got := tok.Policies; len(got) != 2 || got[0].Name != "a-renamed" || got[1].Name != "b" {
		t.Fatalf("got policies %+v, want a-renamed and b", got)
	}
	aclApply(t, s, 6, &ACLRequest{DeletePolicy: pol2ID})
	_, tok, _ = s.ACLToken(nil, tokID)
	if len(tok.Policies) != 1 || tok.Policies[0].ID != polID {
		t.Fatalf("got policies %+v after deleting b, want only a-renamed", tok.Policies)
	}
	_, role, _ := s.ACLRole(nil, "r", true)
	if role == nil || len(role.Policies) != 0 {
		t.Fatalf("got role %+v, want it without the deleted policy", role)
	}
	idx, res, err := s.ACLResolve(tokSec)
	if err != nil || res.Token == nil || len(res.Policies) != 1 || idx != 6 {
		t.Fatalf("resolve: idx %d %+v %v", idx, res, err)
	}
	_, list, _ := s.ACLTokens(nil, ACLTokenFilter{Role: roleID})
	if len(list) != 1 {
		t.Fatalf("got %d tokens of role r, want 1", len(list))
	}
	_, list, _ = s.ACLTokens(nil, ACLTokenFilter{Policy: pol2ID})
	if len(list) != 0 {
		t.Fatalf("got %d tokens of the deleted policy, want 0", len(list))
	}
}

func TestACLBootstrapOnceThenReset(t *testing.T) {
	s := newTestStore(t)
	boot := func(idx uint64, id, secret string, reset uint64) error {
		return s.ACLApply(idx, &ACLRequest{Bootstrap: &ACLBootstrapRequest{ResetIndex: reset, Token: &ACLToken{AccessorID: id, SecretID: secret}}})
	}
	if err := boot(7, tokID, tokSec, 0); err != nil {
		t.Fatalf("first bootstrap: %v", err)
	}
	err := boot(8, tok2ID, tok2Sec, 0)
	if !errors.Is(err, ErrACLBootstrapDone) || err.Error() != "ACL bootstrap no longer allowed (reset index: 7)" {
		t.Fatalf("second bootstrap: got %v, want Consul's refusal with reset index 7", err)
	}
	if err := boot(8, tok2ID, tok2Sec, 6); !errors.Is(err, ErrACLBootstrapDone) {
		t.Fatalf("bootstrap with a wrong reset index: got %v, want refused", err)
	}
	if err := boot(9, tok2ID, tok2Sec, 7); err != nil {
		t.Fatalf("bootstrap with the reset index: %v", err)
	}
	if rec := s.ACLBootstrapRecord(); rec == nil || rec.ResetIndex != 9 {
		t.Fatalf("got record %+v, want reset index 9", rec)
	}
}

func TestACLMirrorHoldsNoSecret(t *testing.T) {
	s := newTestStore(t)
	aclApply(t, s, 1, &ACLRequest{Policy: &ACLPolicy{ID: polID, Name: "a"}})
	aclApply(t, s, 2, &ACLRequest{Token: &ACLTokenRequest{Create: true, Token: &ACLToken{AccessorID: tokID, SecretID: tokSec, Policies: []ACLLink{{ID: polID}}}}})
	var buf bytes.Buffer
	if _, err := s.WriteMirror(&buf, nil); err != nil {
		t.Fatalf("write mirror: %v", err)
	}
	if strings.Contains(buf.String(), tokSec) {
		t.Fatal("the mirror holds a token's SecretID")
	}
	client := newTestStore(t)
	if err := client.RestoreMirror(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("restore mirror: %v", err)
	}
	_, res, err := client.ACLResolve(tokSec)
	if err != nil || res.Token == nil || res.Token.AccessorID != tokID || res.Token.SecretID != "" || len(res.Policies) != 1 {
		t.Fatalf("client resolve: %+v %v, want the token (without its secret) and its policy", res, err)
	}
	// A server that sends secrets is refused.
	var full bytes.Buffer
	if err := s.Snapshot().Write(&full); err != nil {
		t.Fatal(err)
	}
	if err := newTestStore(t).RestoreMirror(&full); err == nil || !strings.Contains(err.Error(), "carries its SecretID") {
		t.Fatalf("restore a mirror with secrets: got %v, want refused", err)
	}
	// A snapshot keeps them.
	restored := newTestStore(t)
	if err := s.Snapshot().Write(&full); err != nil {
		t.Fatal(err)
	}
	if err := restored.Restore(&full); err != nil {
		t.Fatal(err)
	}
	if _, tok, _ := restored.ACLToken(nil, tokID); tok == nil || tok.SecretID != tokSec {
		t.Fatalf("restored token %+v, want its SecretID", tok)
	}
}
