package acl

import "testing"

// FuzzParseRules feeds arbitrary rules documents to the parser and the
// authorizer: no input may panic, and a parsed policy must answer every
// access with a decision.
func FuzzParseRules(f *testing.F) {
	for _, s := range []string{
		`service "web" { policy = "write" }`,
		"service_prefix \"\" {\n  policy = \"read\"\n  intentions = \"write\"\n}\noperator = \"read\"",
		`{"node":{"n":{"policy":"deny"}},"key_prefix":[{"a/":{"policy":"list"}}]}`,
		`acl = "write"`, `namespace "x" {}`, `service "a" { policy = 1 }`, "{", "",
	} {
		f.Add(s, "web")
	}
	f.Fuzz(func(t *testing.T, rules, segment string) {
		p, err := ParseRules(rules)
		if err != nil {
			return
		}
		z := Chain(NewPolicyAuthorizer(p), AllowAll())
		for _, r := range []Resource{ResourceService, ResourceIntention, ResourceNode, ResourceAgent, ResourceKey, ResourceQuery, ResourceOperator, ResourceACL, ResourceMesh, ResourcePeering} {
			for _, a := range []Access{AccessList, AccessRead, AccessWrite} {
				if d := z.Decide(r, segment, a); d != Allow && d != Deny {
					t.Fatalf("%s %q %s: decision %v", r, segment, a, d)
				}
			}
		}
	})
}
