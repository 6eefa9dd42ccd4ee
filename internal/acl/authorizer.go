package acl

import (
	"errors"
	"fmt"
	"strings"
)

// Decision is an authorizer's answer for one access.
type Decision int

// Default means no rule of this authorizer speaks to the access; a chain
// asks the next one.
const (
	Default Decision = iota
	Allow
	Deny
)

// Authorizer decides accesses. segment is the name the access is on (a
// service's, a node's, an intention's destination); it is ignored for the
// unnamed resources (operator, acl, mesh, peering, keyring).
type Authorizer interface {
	Decide(r Resource, segment string, a Access) Decision
}

// takesPrecedence orders the levels for merging rules of one specificity:
// deny over write over read over list.
func takesPrecedence(a, b Access) Access {
	if a > b {
		return a
	}
	return b
}

func mergeRule(a, b Rule) Rule {
	return Rule{Access: takesPrecedence(a.Access, b.Access), Intentions: takesPrecedence(a.Intentions, b.Intentions)}
}

// policyAuthorizer is the merge of one token's policies.
type policyAuthorizer struct{ p Policy }

// NewPolicyAuthorizer merges policies into one authorizer. Rules for the
// same segment at the same specificity merge with deny winning, then write.
func NewPolicyAuthorizer(policies ...*Policy) Authorizer {
	m := Policy{Exact: map[Resource]map[string]Rule{}, Prefix: map[Resource]map[string]Rule{}, Levels: map[Resource]Access{}}
	for _, p := range policies {
		if p == nil {
			continue
		}
		mergeRules(m.Exact, p.Exact)
		mergeRules(m.Prefix, p.Prefix)
		for r, a := range p.Levels {
			m.Levels[r] = takesPrecedence(m.Levels[r], a)
		}
	}
	return &policyAuthorizer{p: m}
}

func mergeRules(into, from map[Resource]map[string]Rule) {
	for res, rules := range from {
		dst := into[res]
		if dst == nil {
			dst = make(map[string]Rule, len(rules))
			into[res] = dst
		}
		for name, r := range rules {
			if old, ok := dst[name]; ok {
				r = mergeRule(old, r)
			}
			dst[name] = r
		}
	}
}

// Decide applies the most specific rule: the exact name, else the longest
// matching prefix.
func (p *policyAuthorizer) Decide(r Resource, segment string, a Access) Decision {
	if !r.named() {
		level := p.p.Levels[r]
		if level == AccessUnknown && (r == ResourceMesh || r == ResourcePeering) {
			// As in Consul: without a mesh (peering) rule, the operator
			// rule decides ("mesh:read or operator:read").
			level = p.p.Levels[ResourceOperator]
		}
		return decide(level, a)
	}
	lookup := r
	if r == ResourceIntention {
		lookup = ResourceService
	}
	level := func(rule Rule) Access {
		if r != ResourceIntention {
			return rule.Access
		}
		if rule.Intentions != AccessUnknown {
			return rule.Intentions
		}
		// As in Consul: reading or writing a service lets the token read
		// its intentions; denying it denies them.
		switch rule.Access {
		case AccessRead, AccessWrite:
			return AccessRead
		case AccessDeny:
			return AccessDeny
		}
		return AccessUnknown
	}
	if rule, ok := p.p.Exact[lookup][segment]; ok {
		if l := level(rule); l != AccessUnknown {
			return decide(l, a)
		}
	}
	best, found := -1, AccessUnknown
	for prefix, rule := range p.p.Prefix[lookup] {
		if len(prefix) <= best || !strings.HasPrefix(segment, prefix) {
			continue
		}
		if l := level(rule); l != AccessUnknown {
			best, found = len(prefix), l
		}
	}
	return decide(found, a)
}

// decide answers a request for want under a rule granting have.
func decide(have, want Access) Decision {
	switch {
	case have == AccessUnknown:
		return Default
	case have == AccessDeny:
		return Deny
	case have >= want:
		return Allow
	}
	return Deny
}

type static struct{ allow, manage bool }

func (s static) Decide(r Resource, _ string, _ Access) Decision {
	if s.manage || (s.allow && r != ResourceACL) {
		return Allow
	}
	return Deny
}

// Management allows everything, the ACL system included.
func Management() Authorizer { return static{allow: true, manage: true} }

// AllowAll is default_policy "allow": everything but the ACL system, which
// takes a rule or a management token, as in Consul.
func AllowAll() Authorizer { return static{allow: true} }

// DenyAll is default_policy "deny".
func DenyAll() Authorizer { return static{} }

// DefaultPolicy returns the authorizer for an agent's default_policy.
func DefaultPolicy(policy string) (Authorizer, error) {
	switch policy {
	case "allow":
		return AllowAll(), nil
	case "deny", "":
		return DenyAll(), nil
	}
	return nil, fmt.Errorf("invalid ACL default policy %q: use \"allow\" or \"deny\"", policy)
}

type chain []Authorizer

func (c chain) Decide(r Resource, segment string, a Access) Decision {
	for _, z := range c {
		if d := z.Decide(r, segment, a); d != Default {
			return d
		}
	}
	return Deny
}

// Chain asks each authorizer in turn and takes the first answer that is not
// Default; when none answers, the access is denied.
func Chain(as ...Authorizer) Authorizer { return chain(as) }

// ErrPermissionDenied is what every PermissionDeniedError matches with
// errors.Is.
//
//lint:ignore ST1005 the text is Consul's, which its clients match
var ErrPermissionDenied = errors.New("Permission denied")

// PermissionDeniedError names the permission a token lacks.
type PermissionDeniedError struct {
	AccessorID string
	Resource   Resource
	Segment    string
	Access     Access
}

func (e *PermissionDeniedError) Error() string {
	if e.Resource.named() {
		return fmt.Sprintf("Permission denied: token with AccessorID '%s' lacks permission '%s:%s' on %q", e.AccessorID, e.Resource, e.Access, e.Segment)
	}
	return fmt.Sprintf("Permission denied: token with AccessorID '%s' lacks permission '%s:%s'", e.AccessorID, e.Resource, e.Access)
}

// Is makes errors.Is(err, ErrPermissionDenied) true.
func (e *PermissionDeniedError) Is(target error) bool { return target == ErrPermissionDenied }

// Enforcer is a resolved token: its authorizer (already chained with the
// default policy) and its accessor, for errors.
type Enforcer struct {
	Authorizer Authorizer
	AccessorID string
}

// Allowed reports whether the token may access segment of r at level a.
func (e Enforcer) Allowed(r Resource, segment string, a Access) bool {
	if e.Authorizer == nil {
		return false
	}
	return e.Authorizer.Decide(r, segment, a) == Allow
}

// Require returns nil when the access is allowed and a
// *PermissionDeniedError naming the permission otherwise.
func (e Enforcer) Require(r Resource, segment string, a Access) error {
	if e.Allowed(r, segment, a) {
		return nil
	}
	return &PermissionDeniedError{AccessorID: e.AccessorID, Resource: r, Segment: segment, Access: a}
}

// ServiceIdentityPolicy is the policy Consul synthesizes for a token's
// service identity: write on the service and its sidecar proxy, read on
// every service and node (for discovery).
func ServiceIdentityPolicy(service string) *Policy {
	return &Policy{
		Exact: map[Resource]map[string]Rule{ResourceService: {
			service: {Access: AccessWrite}, service + "-sidecar-proxy": {Access: AccessWrite},
		}},
		Prefix: map[Resource]map[string]Rule{
			ResourceService: {"": {Access: AccessRead}},
			ResourceNode:    {"": {Access: AccessRead}},
		},
		Levels: map[Resource]Access{},
	}
}

// NodeIdentityPolicy is the policy Consul synthesizes for a node identity:
// write on the node, read on every service.
func NodeIdentityPolicy(node string) *Policy {
	return &Policy{
		Exact:  map[Resource]map[string]Rule{ResourceNode: {node: {Access: AccessWrite}}},
		Prefix: map[Resource]map[string]Rule{ResourceService: {"": {Access: AccessRead}}},
		Levels: map[Resource]Access{},
	}
}

// MaxSecretLen bounds a token secret given to an agent (its
// configuration, PUT /v1/agent/token).
const MaxSecretLen = 256

// ValidateSecret checks a token secret given to an agent: "" (none) or up
// to MaxSecretLen printable ASCII characters without spaces. The error
// never contains the secret.
func ValidateSecret(v string) error {
	if len(v) > MaxSecretLen {
		return fmt.Errorf("%d characters: a token secret has at most %d", len(v), MaxSecretLen)
	}
	for _, r := range v {
		if r <= ' ' || r == 0x7f || r > '~' {
			return errors.New("holds a space or a character that is not printable ASCII: give the SecretID only")
		}
	}
	return nil
}
