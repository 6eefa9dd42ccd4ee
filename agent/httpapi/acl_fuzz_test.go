package httpapi

import (
	"errors"
	"testing"
	"time"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/decode"
)

// The ACL endpoints' request bodies are external input: each target runs
// the handler's decode and validation and then the state write the
// request would become, on a store holding the builtins. Nothing may
// panic, and what the store refuses must be one of its ACL errors.

func fuzzStore(t *testing.T) *state.Store {
	s, err := state.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	for i, req := range []*state.ACLRequest{
		{Policy: &state.ACLPolicy{ID: state.ACLManagementPolicyID, Name: state.ACLManagementPolicyName, Rules: state.ACLManagementRules}},
		{Token: &state.ACLTokenRequest{Create: true, Token: &state.ACLToken{AccessorID: state.ACLAnonymousTokenID, SecretID: state.ACLAnonymousSecret}}},
		{Policy: &state.ACLPolicy{ID: "44444444-0000-4000-8000-000000000001", Name: "web", Rules: `service "web" { policy = "write" }`}},
		{Role: &state.ACLRole{ID: "44444444-0000-4000-8000-000000000002", Name: "ops", Policies: []state.ACLLink{{Name: "web"}}}},
	} {
		if err := s.ACLApply(uint64(i+1), req); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func checkACLWrite(t *testing.T, err error) {
	if err != nil && !errors.Is(err, state.ErrACLInvalid) && !errors.Is(err, state.ErrACLNotFound) {
		t.Fatalf("the store refused a validated request with an unexpected error: %v", err)
	}
}

func FuzzACLTokenBody(f *testing.F) {
	for _, s := range []string{
		`{"Description":"x","Policies":[{"Name":"web"}],"Roles":[{"ID":"44444444-0000-4000-8000-000000000002"}]}`,
		`{"ServiceIdentities":[{"ServiceName":"api","Datacenters":["dc1"]}],"NodeIdentities":[{"NodeName":"n1","Datacenter":"dc1"}]}`,
		`{"ExpirationTTL":"1h"}`, `{"ExpirationTTL":3600000000000}`, `{"ExpirationTime":"2030-01-01T00:00:00Z"}`,
		`{"AccessorID":"44444444-0000-4000-8000-000000000003","SecretID":"44444444-0000-4000-8000-000000000004"}`,
		`{"SecretID":"anonymous"}`, `{"TemplatedPolicies":[{}]}`, `{"Namespace":"other"}`, `{"Policies":[{}]}`, `[]`, `null`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		var body aclTokenBody
		if err := decode.JSON(data, &body); err != nil {
			return
		}
		tok, err := newTokenFromBody(&body, now)
		if err != nil {
			return
		}
		s := fuzzStore(t)
		err = s.ACLApply(10, &state.ACLRequest{Token: &state.ACLTokenRequest{Create: true, Token: tok}})
		checkACLWrite(t, err)
		if err == nil {
			if _, got, _ := s.ACLTokenBySecret(nil, tok.SecretID); got == nil || got.AccessorID != tok.AccessorID {
				t.Fatalf("a written token does not resolve by its secret: %+v", got)
			}
		}
	})
}

func FuzzACLPolicyBody(f *testing.F) {
	for _, s := range []string{
		`{"Name":"p","Rules":"service \"web\" { policy = \"read\" }"}`,
		`{"Name":"p","Rules":"{\"service\":{\"web\":{\"policy\":\"read\"}}}"}`,
		`{"Name":"p","Rules":"service \"web\" {\n policy = \n}"}`,
		`{"Name":"web","Datacenters":["dc1",""]}`, `{"Name":"a b"}`, `{"Name":"global-management","Rules":"acl = \"read\""}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var body aclPolicyBody
		if err := decode.JSON(data, &body); err != nil {
			return
		}
		if defaultTenancy(body.Namespace, body.Partition) != nil {
			return
		}
		p := &state.ACLPolicy{ID: "44444444-0000-4000-8000-000000000009", Name: body.Name, Description: body.Description,
			Rules: body.Rules, Datacenters: body.Datacenters}
		if err := validatePolicy(p); err != nil {
			return
		}
		checkACLWrite(t, fuzzStore(t).ACLApply(10, &state.ACLRequest{Policy: p}))
	})
}

func FuzzACLRoleBody(f *testing.F) {
	for _, s := range []string{
		`{"Name":"r","Policies":[{"Name":"web"}],"ServiceIdentities":[{"ServiceName":"api"}]}`,
		`{"Name":"ops"}`, `{"Name":"r","Policies":[{"ID":"nope"}]}`, `{"Name":"r","NodeIdentities":[{"NodeName":"n"}]}`,
		`{"Name":"r","TemplatedPolicies":[1]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var body aclRoleBody
		if err := decode.JSON(data, &body); err != nil {
			return
		}
		if validateRole(&body) != nil {
			return
		}
		r := &state.ACLRole{ID: "44444444-0000-4000-8000-00000000000a", Name: body.Name, Description: body.Description,
			Policies: body.Policies, ServiceIdentities: body.ServiceIdentities, NodeIdentities: body.NodeIdentities}
		checkACLWrite(t, fuzzStore(t).ACLApply(10, &state.ACLRequest{Role: r}))
	})
}
