package acl

import (
	"errors"
	"strings"
	"testing"
)

func mustParse(t *testing.T, rules string) *Policy {
	t.Helper()
	p, err := ParseRules(rules)
	if err != nil {
		t.Fatalf("ParseRules(%q): %v", rules, err)
	}
	return p
}

func TestPrecedence(t *testing.T) {
	p := mustParse(t, `
service "web" { policy = "read" }
service_prefix "we" { policy = "deny" }
service_prefix "" { policy = "write" }
service_prefix "bill" { policy = "read" }
node_prefix "" { policy = "read" }
operator = "read"
key_prefix "app/" { policy = "list" }
`)
	z := Chain(NewPolicyAuthorizer(p), DenyAll())
	cases := []struct {
		r    Resource
		seg  string
		a    Access
		want Decision
	}{
		{ResourceService, "web", AccessRead, Allow},     // exact beats the deny prefix
		{ResourceService, "web", AccessWrite, Deny},     // exact read only
		{ResourceService, "webby", AccessRead, Deny},    // longest prefix "we" denies
		{ResourceService, "db", AccessWrite, Allow},     // "" prefix
		{ResourceService, "billing", AccessWrite, Deny}, // longer prefix read beats "" write
		{ResourceService, "billing", AccessRead, Allow}, //
		{ResourceNode, "n1", AccessWrite, Deny},         //
		{ResourceNode, "n1", AccessRead, Allow},         //
		{ResourceOperator, "", AccessRead, Allow},       //
		{ResourceOperator, "", AccessWrite, Deny},       //
		{ResourceACL, "", AccessRead, Deny},             // no rule: default deny
		{ResourceKey, "app/x", AccessList, Allow},       //
		{ResourceKey, "app/x", AccessRead, Deny},        // list is weaker than read
		{ResourceIntention, "web", AccessRead, Allow},   // read on a service reads its intentions
		{ResourceIntention, "web", AccessWrite, Deny},   //
		{ResourceIntention, "webby", AccessRead, Deny},  // denied service, denied intentions
		{ResourcePeering, "", AccessRead, Allow},        // no peering rule: the operator rule, as in Consul
		{ResourceMesh, "", AccessWrite, Deny},           //
		{ResourceAgent, "node-1", AccessRead, Deny},     //
		{ResourceQuery, "q", AccessRead, Deny},          //
		{ResourceService, "", AccessRead, Allow},        // empty name matches the "" prefix
	}
	for _, c := range cases {
		if got := z.Decide(c.r, c.seg, c.a); got != c.want {
			t.Errorf("%s %q %s: got %v, want %v", c.r, c.seg, c.a, got, c.want)
		}
	}
}

func TestMergeDenyWinsAtEqualSpecificity(t *testing.T) {
	a := mustParse(t, `service "web" { policy = "write" }
mesh = "write"`)
	b := mustParse(t, `service "web" { policy = "deny" }
mesh = "read"`)
	c := mustParse(t, `service "db" { policy = "read" }`)
	d := mustParse(t, `service "db" { policy = "write" }`)
	z := NewPolicyAuthorizer(a, b, c, d)
	if got := z.Decide(ResourceService, "web", AccessRead); got != Deny {
		t.Errorf("web: deny must win, got %v", got)
	}
	if got := z.Decide(ResourceService, "db", AccessWrite); got != Allow {
		t.Errorf("db: write must win over read, got %v", got)
	}
	if got := z.Decide(ResourceMesh, "", AccessWrite); got != Allow {
		t.Errorf("mesh: write must win over read, got %v", got)
	}
	if got := z.Decide(ResourceService, "other", AccessRead); got != Default {
		t.Errorf("no rule: got %v, want Default", got)
	}
}

func TestIntentionsField(t *testing.T) {
	p := mustParse(t, `service "web" {
  policy = "read"
  intentions = "write"
}
service_prefix "" { intentions = "deny" }`)
	z := NewPolicyAuthorizer(p)
	if z.Decide(ResourceIntention, "web", AccessWrite) != Allow {
		t.Error("intentions = write on web must allow writing web's intentions")
	}
	if z.Decide(ResourceService, "web", AccessWrite) != Deny {
		t.Error("intentions = write must not give service write")
	}
	if z.Decide(ResourceIntention, "db", AccessRead) != Deny {
		t.Error("service_prefix intentions deny must deny db's intentions")
	}
	if z.Decide(ResourceService, "db", AccessRead) != Default {
		t.Error("an intentions-only prefix rule says nothing about the service")
	}
}

func TestJSONRules(t *testing.T) {
	p := mustParse(t, `{"service":{"web":{"policy":"write"}},"service_prefix":[{"":{"policy":"read"}}],"peering":"read","key":{"k":{"policy":"read"}},"query_prefix":{"":{"policy":"read"}},"agent_prefix":{"":{"policy":"read"}}}`)
	z := NewPolicyAuthorizer(p)
	for _, c := range []struct {
		r   Resource
		seg string
		a   Access
	}{{ResourceService, "web", AccessWrite}, {ResourceService, "x", AccessRead}, {ResourcePeering, "", AccessRead}, {ResourceAgent, "n", AccessRead}, {ResourceKey, "k", AccessRead}} {
		if z.Decide(c.r, c.seg, c.a) != Allow {
			t.Errorf("%s %q %s not allowed", c.r, c.seg, c.a)
		}
	}
}

func TestRulesErrors(t *testing.T) {
	for _, c := range []struct{ rules, want string }{
		{"service \"web\" {\n  policy = \n}", "rules:2"},
		{`service "web" { policy = "wrtie" }`, `invalid policy "wrtie"`},
		{`operator = "list"`, `operator: invalid policy "list"`},
		{`servce "web" { policy = "read" }`, `unknown rule "servce"`},
		{`service "web" { polcy = "read" }`, `unknown field "polcy"`},
		{`node "n" { intentions = "read" }`, "intentions is only for service"},
		{`service "web" {}`, "no policy"},
		{`namespace "x" { policy = "read" }`, "namespaces and partitions are not supported"},
		{`operator = { a = 1 }`, "expected a level"},
		{`service = "read"`, "expected service"},
		{`{"service": [1]}`, "expected an object"},
		{strings.Repeat(" ", MaxRulesBytes) + "x", "over the limit"},
	} {
		_, err := ParseRules(c.rules)
		var re *RulesError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseRules(%.40q) = %v, want a RulesError containing %q", c.rules, err, c.want)
		}
	}
}

func TestStaticAndDefault(t *testing.T) {
	if Management().Decide(ResourceACL, "", AccessWrite) != Allow {
		t.Error("management must manage ACLs")
	}
	allow, _ := DefaultPolicy("allow")
	if allow.Decide(ResourceService, "x", AccessWrite) != Allow || allow.Decide(ResourceACL, "", AccessRead) != Deny {
		t.Error("default allow: everything but ACLs")
	}
	deny, _ := DefaultPolicy("deny")
	if deny.Decide(ResourceService, "x", AccessRead) != Deny {
		t.Error("default deny must deny")
	}
	if _, err := DefaultPolicy("maybe"); err == nil {
		t.Error("a bad default policy must be an error")
	}
	if Chain().Decide(ResourceService, "x", AccessRead) != Deny {
		t.Error("an empty chain denies")
	}
}

func TestEnforcerErrors(t *testing.T) {
	e := Enforcer{Authorizer: Chain(NewPolicyAuthorizer(mustParse(t, `service "web" { policy = "write" }`)), DenyAll()), AccessorID: "a-1"}
	if err := e.Require(ResourceService, "web", AccessWrite); err != nil {
		t.Fatal(err)
	}
	err := e.Require(ResourceService, "billing", AccessWrite)
	if !errors.Is(err, ErrPermissionDenied) || err.Error() != `Permission denied: token with AccessorID 'a-1' lacks permission 'service:write' on "billing"` {
		t.Errorf("got %v", err)
	}
	if err := e.Require(ResourceOperator, "", AccessWrite); err == nil || err.Error() != "Permission denied: token with AccessorID 'a-1' lacks permission 'operator:write'" {
		t.Errorf("got %v", err)
	}
	if (Enforcer{}).Allowed(ResourceService, "x", AccessRead) {
		t.Error("an empty enforcer must allow nothing")
	}
}

func TestIdentities(t *testing.T) {
	z := NewPolicyAuthorizer(ServiceIdentityPolicy("web"))
	if z.Decide(ResourceService, "web-sidecar-proxy", AccessWrite) != Allow || z.Decide(ResourceService, "db", AccessWrite) != Deny ||
		z.Decide(ResourceService, "db", AccessRead) != Allow || z.Decide(ResourceNode, "n", AccessRead) != Allow {
		t.Error("service identity")
	}
	n := NewPolicyAuthorizer(NodeIdentityPolicy("n1"))
	if n.Decide(ResourceNode, "n1", AccessWrite) != Allow || n.Decide(ResourceNode, "n2", AccessWrite) != Default || n.Decide(ResourceService, "s", AccessRead) != Allow {
		t.Error("node identity")
	}
}

// Without a mesh or peering rule the operator rule decides, as in Consul
// ("mesh:read or operator:read"); a mesh or peering rule of its own wins.
func TestMeshAndPeeringFallBackToOperator(t *testing.T) {
	tests := []struct {
		rules string
		r     Resource
		a     Access
		want  Decision
	}{
		{`operator = "read"`, ResourceMesh, AccessRead, Allow},
		{`operator = "read"`, ResourceMesh, AccessWrite, Deny},
		{`operator = "write"`, ResourcePeering, AccessWrite, Allow},
		{`operator = "write"` + "\n" + `peering = "read"`, ResourcePeering, AccessWrite, Deny},
		{`operator = "deny"` + "\n" + `mesh = "write"`, ResourceMesh, AccessWrite, Allow},
		{`operator = "write"`, ResourceKeyring, AccessRead, Deny}, // keyring does not fall back
	}
	for _, tt := range tests {
		t.Run(tt.rules+" "+string(tt.r), func(t *testing.T) {
			z := Chain(NewPolicyAuthorizer(mustParse(t, tt.rules)), DenyAll())
			if got := z.Decide(tt.r, "", tt.a); got != tt.want {
				t.Errorf("%s:%s got %v, want %v", tt.r, tt.a, got, tt.want)
			}
		})
	}
}
