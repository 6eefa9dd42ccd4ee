package aclresolve

import (
	"errors"
	"testing"
	"time"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/acl"
)

const (
	polID  = "22222222-0000-4000-8000-000000000001"
	tokID  = "22222222-0000-4000-8000-000000000002"
	tokSec = "22222222-0000-4000-8000-000000000003"
	mgmtID = "22222222-0000-4000-8000-000000000004"
	mgmtSc = "22222222-0000-4000-8000-000000000005"
	expID  = "22222222-0000-4000-8000-000000000006"
	expSec = "22222222-0000-4000-8000-000000000007"
)

type fixture struct {
	t     *testing.T
	store *state.Store
	idx   uint64
}

func (f *fixture) apply(req *state.ACLRequest) {
	f.t.Helper()
	f.idx++
	if err := f.store.ACLApply(f.idx, req); err != nil {
		f.t.Fatalf("acl write: %v", err)
	}
}

func newFixture(t testing.TB) *fixture {
	s, err := state.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	tt, _ := t.(*testing.T)
	f := &fixture{t: tt, store: s}
	must := func(req *state.ACLRequest) {
		f.idx++
		if err := s.ACLApply(f.idx, req); err != nil {
			t.Fatalf("acl write: %v", err)
		}
	}
	must(&state.ACLRequest{Policy: &state.ACLPolicy{ID: state.ACLManagementPolicyID, Name: state.ACLManagementPolicyName, Rules: state.ACLManagementRules}})
	must(&state.ACLRequest{Token: &state.ACLTokenRequest{Create: true, Token: &state.ACLToken{AccessorID: state.ACLAnonymousTokenID, SecretID: state.ACLAnonymousSecret}}})
	must(&state.ACLRequest{Policy: &state.ACLPolicy{ID: polID, Name: "web-read", Rules: `service "web" { policy = "read" }`}})
	must(&state.ACLRequest{Token: &state.ACLTokenRequest{Create: true, Token: &state.ACLToken{AccessorID: tokID, SecretID: tokSec, Policies: []state.ACLLink{{ID: polID}}}}})
	must(&state.ACLRequest{Token: &state.ACLTokenRequest{Create: true, Token: &state.ACLToken{AccessorID: mgmtID, SecretID: mgmtSc, Policies: []state.ACLLink{{ID: state.ACLManagementPolicyID}}}}})
	return f
}

func newResolver(t testing.TB, s *state.Store, policy string, now func() time.Time) *Resolver {
	r, err := New(Config{Store: s, Enabled: true, DefaultPolicy: policy, Datacenter: "dc1", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestResolveOffIsManagement(t *testing.T) {
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	e, tok, err := r.Resolve("whatever")
	if err != nil || tok != nil || !e.Allowed(acl.ResourceACL, "", acl.AccessWrite) {
		t.Fatalf("ACLs off: got %v %v %v, want management", e, tok, err)
	}
	if _, err := New(Config{Enabled: true}); err == nil {
		t.Fatal("enabled without a store: got no error")
	}
	if _, err := New(Config{Enabled: true, Store: newFixture(t).store, DefaultPolicy: "maybe"}); err == nil {
		t.Fatal("default policy maybe: got no error")
	}
}

func TestResolve(t *testing.T) {
	f := newFixture(t)
	r := newResolver(t, f.store, "deny", nil)
	anon, tok, err := r.Resolve("")
	if err != nil || tok == nil || tok.AccessorID != state.ACLAnonymousTokenID {
		t.Fatalf("anonymous: %v %v", tok, err)
	}
	if anon.Allowed(acl.ResourceService, "web", acl.AccessRead) {
		t.Fatal("anonymous reads web under default deny")
	}
	e, _, err := r.Resolve(tokSec)
	if err != nil {
		t.Fatal(err)
	}
	if !e.Allowed(acl.ResourceService, "web", acl.AccessRead) || e.Allowed(acl.ResourceService, "web", acl.AccessWrite) ||
		e.Allowed(acl.ResourceService, "db", acl.AccessRead) {
		t.Fatal("web-read token: want read on web only")
	}
	if err := e.Require(acl.ResourceACL, "", acl.AccessRead); !errors.Is(err, acl.ErrPermissionDenied) {
		t.Fatalf("web-read token acl:read: got %v, want permission denied", err)
	}
	m, _, err := r.Resolve(mgmtSc)
	if err != nil || !m.Allowed(acl.ResourceACL, "", acl.AccessWrite) {
		t.Fatalf("management: %v", err)
	}
	if _, _, err := r.Resolve("22222222-0000-4000-8000-00000000ffff"); !errors.Is(err, ErrTokenNotFound) || err.Error() != "ACL not found" {
		t.Fatalf("unknown secret: got %v, want ACL not found", err)
	}
	// Default allow: what no rule speaks to is allowed, the ACL system excepted.
	ra := newResolver(t, f.store, "allow", nil)
	e, _, _ = ra.Resolve(tokSec)
	if !e.Allowed(acl.ResourceService, "db", acl.AccessWrite) || e.Allowed(acl.ResourceACL, "", acl.AccessRead) {
		t.Fatal("default allow: want db write, no acl read")
	}
}

// TestResolveNoStaleAuthority: every change of a token or its policies is
// seen by the next Resolve of a cached token.
func TestResolveNoStaleAuthority(t *testing.T) {
	f := newFixture(t)
	r := newResolver(t, f.store, "deny", nil)
	read := func() bool {
		e, _, err := r.Resolve(tokSec)
		if err != nil {
			t.Fatalf("resolve: %v", err)
		}
		return e.Allowed(acl.ResourceService, "web", acl.AccessWrite)
	}
	if read() {
		t.Fatal("write on web before the change")
	}
	f.apply(&state.ACLRequest{Policy: &state.ACLPolicy{ID: polID, Name: "web-read", Rules: `service "web" { policy = "write" }`}})
	if !read() {
		t.Fatal("the policy now grants write; the cached token does not")
	}
	f.apply(&state.ACLRequest{DeletePolicy: polID})
	e, _, _ := r.Resolve(tokSec)
	if e.Allowed(acl.ResourceService, "web", acl.AccessRead) {
		t.Fatal("the policy is deleted; the cached token still reads web")
	}
	f.apply(&state.ACLRequest{DeleteToken: tokID})
	if _, _, err := r.Resolve(tokSec); !errors.Is(err, ErrTokenNotFound) {
		t.Fatalf("deleted token: got %v, want ACL not found", err)
	}
}

func TestResolveExpiry(t *testing.T) {
	f := newFixture(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	exp := now.Add(time.Hour)
	f.apply(&state.ACLRequest{Token: &state.ACLTokenRequest{Create: true, Token: &state.ACLToken{
		AccessorID: expID, SecretID: expSec, ExpirationTTL: time.Hour, ExpirationTime: &exp}}})
	clock := now
	r := newResolver(t, f.store, "deny", func() time.Time { return clock })
	if _, _, err := r.Resolve(expSec); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	clock = exp
	if _, _, err := r.Resolve(expSec); !errors.Is(err, ErrTokenNotFound) {
		t.Fatalf("at expiry (cached): got %v, want ACL not found", err)
	}
}

func TestResolveIdentitiesAndDatacenters(t *testing.T) {
	f := newFixture(t)
	const id, sec = "22222222-0000-4000-8000-000000000008", "22222222-0000-4000-8000-000000000009"
	const pol = "22222222-0000-4000-8000-00000000000a"
	f.apply(&state.ACLRequest{Policy: &state.ACLPolicy{ID: pol, Name: "dc2-only", Rules: `operator = "write"`, Datacenters: []string{"dc2"}}})
	f.apply(&state.ACLRequest{Token: &state.ACLTokenRequest{Create: true, Token: &state.ACLToken{AccessorID: id, SecretID: sec,
		Policies:          []state.ACLLink{{ID: pol}},
		ServiceIdentities: []*state.ACLServiceIdentity{{ServiceName: "api"}, {ServiceName: "billing", Datacenters: []string{"dc2"}}},
		NodeIdentities:    []*state.ACLNodeIdentity{{NodeName: "n1", Datacenter: "dc1"}, {NodeName: "n2", Datacenter: "dc2"}}}}})
	e, _, err := newResolver(t, f.store, "deny", nil).Resolve(sec)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		res  acl.Resource
		seg  string
		a    acl.Access
		want bool
	}{
		{"service identity writes its service", acl.ResourceService, "api", acl.AccessWrite, true},
		{"and its sidecar", acl.ResourceService, "api-sidecar-proxy", acl.AccessWrite, true},
		{"and reads the others", acl.ResourceService, "db", acl.AccessRead, true},
		{"not write them", acl.ResourceService, "db", acl.AccessWrite, false},
		{"dc2 identity grants nothing in dc1", acl.ResourceService, "billing", acl.AccessWrite, false},
		{"node identity of dc1", acl.ResourceNode, "n1", acl.AccessWrite, true},
		{"node identity of dc2", acl.ResourceNode, "n2", acl.AccessWrite, false},
		{"dc2 policy", acl.ResourceOperator, "", acl.AccessWrite, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := e.Allowed(tt.res, tt.seg, tt.a); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// BenchmarkResolveCached is the cost every request pays with ACLs on: a
// token already compiled at the current index.
func BenchmarkResolveCached(b *testing.B) {
	f := newFixture(b)
	r := newResolver(b, f.store, "deny", nil)
	if _, _, err := r.Resolve(tokSec); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e, _, err := r.Resolve(tokSec)
		if err != nil || !e.Allowed(acl.ResourceService, "web", acl.AccessRead) {
			b.Fatal("resolve failed")
		}
	}
}

// BenchmarkResolveUncached compiles the token every time (the cache is
// flushed by a change of the ACL tables).
func BenchmarkResolveUncached(b *testing.B) {
	f := newFixture(b)
	r := newResolver(b, f.store, "deny", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.mu.Lock()
		clear(r.cache)
		r.mu.Unlock()
		if _, _, err := r.Resolve(tokSec); err != nil {
			b.Fatal(err)
		}
	}
}
