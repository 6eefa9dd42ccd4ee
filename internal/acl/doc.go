// Package acl is Consul's ACL rules language and its authorizers.
//
// ParseRules reads a policy's rules (HCL or JSON, as Consul writes them)
// into a Policy. NewPolicyAuthorizer merges policies into an Authorizer that
// decides each access by Consul's precedence: a rule for the exact name
// beats any prefix rule, the longest matching prefix beats shorter ones,
// and where two rules of the same specificity disagree (two policies of one
// token), deny beats write beats read. An authorizer answers Default where
// no rule speaks; Chain asks authorizers in turn (the token's policies, then
// the agent's default policy). Enforcer puts a chain together with the
// token's accessor, for the Consul-shaped "Permission denied" errors.
//
// It imports nothing of peerd but internal/decode.
package acl
