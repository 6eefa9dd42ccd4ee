package acl

import (
	"fmt"
	"sort"
	"strings"

	"github.com/peerd/peerd/internal/decode"
)

// MaxRulesBytes bounds a policy's rules text.
const MaxRulesBytes = 128 << 10

// Access is a level of access a rule grants or a request needs.
type Access int

// The access levels, weakest first. Deny is not a level a request needs:
// it is what a rule says to refuse every level.
const (
	AccessUnknown Access = iota
	AccessList
	AccessRead
	AccessWrite
	AccessDeny
)

// String returns the level as rules spell it.
func (a Access) String() string {
	switch a {
	case AccessList:
		return "list"
	case AccessRead:
		return "read"
	case AccessWrite:
		return "write"
	case AccessDeny:
		return "deny"
	}
	return "unknown"
}

// parseAccess reads a rule's level; list is only for key prefixes.
func parseAccess(s string, listOK bool) (Access, error) {
	switch s {
	case "read":
		return AccessRead, nil
	case "write":
		return AccessWrite, nil
	case "deny":
		return AccessDeny, nil
	case "list":
		if listOK {
			return AccessList, nil
		}
	}
	want := `"read", "write" or "deny"`
	if listOK {
		want = `"read", "write", "list" or "deny"`
	}
	return AccessUnknown, fmt.Errorf("invalid policy %q: use %s", s, want)
}

// Resource is a kind of thing rules govern.
type Resource string

// The resources of Consul's rules language. Intention is a service rule's
// intentions level, looked up by the intention's destination.
const (
	ResourceService   Resource = "service"
	ResourceIntention Resource = "intention"
	ResourceNode      Resource = "node"
	ResourceAgent     Resource = "agent"
	ResourceKey       Resource = "key"
	ResourceQuery     Resource = "query"
	ResourceSession   Resource = "session"
	ResourceEvent     Resource = "event"
	ResourceOperator  Resource = "operator"
	ResourceACL       Resource = "acl"
	ResourceMesh      Resource = "mesh"
	ResourcePeering   Resource = "peering"
	ResourceKeyring   Resource = "keyring"
)

// named reports whether r's rules name a segment (service "web") rather
// than being one level for the whole resource (operator = "read").
func (r Resource) named() bool {
	switch r {
	case ResourceOperator, ResourceACL, ResourceMesh, ResourcePeering, ResourceKeyring:
		return false
	}
	return true
}

// Rule is one named rule: the level for the segment and, for services, the
// level for intentions with it as destination (AccessUnknown = not given).
type Rule struct {
	Access     Access
	Intentions Access
}

// Policy is one parsed rules document.
type Policy struct {
	// Exact and Prefix hold the named rules by resource and segment.
	Exact  map[Resource]map[string]Rule
	Prefix map[Resource]map[string]Rule
	// Levels holds the unnamed resources (operator, acl, mesh, peering, keyring).
	Levels map[Resource]Access
}

// RulesError is a rules document that cannot be used: a syntax error
// (with the position, as "rules:3,5-9: ...") or a rule that says something
// Consul's language does not.
type RulesError struct{ Msg string }

func (e *RulesError) Error() string { return "invalid ACL rules: " + e.Msg }

// blockKeys maps the rules' block names to their resource and whether they
// are prefix rules.
var blockKeys = map[string]struct {
	res    Resource
	prefix bool
}{
	"service": {ResourceService, false}, "service_prefix": {ResourceService, true},
	"node": {ResourceNode, false}, "node_prefix": {ResourceNode, true},
	"agent": {ResourceAgent, false}, "agent_prefix": {ResourceAgent, true},
	"key": {ResourceKey, false}, "key_prefix": {ResourceKey, true},
	"query": {ResourceQuery, false}, "query_prefix": {ResourceQuery, true},
	"session": {ResourceSession, false}, "session_prefix": {ResourceSession, true},
	"event": {ResourceEvent, false}, "event_prefix": {ResourceEvent, true},
}

// ParseRules parses a rules document, HCL or JSON as Consul accepts them:
//
//	service "web" { policy = "write"  intentions = "read" }
//	service_prefix "" { policy = "read" }
//	operator = "read"
//
// An empty document is a policy with no rules.
func ParseRules(rules string) (*Policy, error) {
	p := &Policy{Exact: map[Resource]map[string]Rule{}, Prefix: map[Resource]map[string]Rule{}, Levels: map[Resource]Access{}}
	if strings.TrimSpace(rules) == "" {
		return p, nil
	}
	if len(rules) > MaxRulesBytes {
		return nil, &RulesError{Msg: fmt.Sprintf("%d bytes is over the limit of %d", len(rules), MaxRulesBytes)}
	}
	doc, err := decode.Generic([]byte(rules), "rules")
	if err != nil {
		return nil, &RulesError{Msg: err.Error()}
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := p.add(k, doc[k]); err != nil {
			return nil, &RulesError{Msg: err.Error()}
		}
	}
	return p, nil
}

func (p *Policy) add(key string, v any) error {
	switch key {
	case "operator", "acl", "mesh", "peering", "keyring":
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: expected a level such as %s = \"read\", got %s", key, key, describe(v))
		}
		a, err := parseAccess(s, false)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		p.Levels[Resource(key)] = a
		return nil
	case "namespace", "namespace_prefix", "partition", "partition_prefix":
		return fmt.Errorf("%s: namespaces and partitions are not supported (peerd has the default namespace and partition only); write the rules without the %s block", key, key)
	}
	b, ok := blockKeys[key]
	if !ok {
		return fmt.Errorf("unknown rule %q: use service, service_prefix, node, node_prefix, agent, agent_prefix, key, key_prefix, query, query_prefix, session, session_prefix, event, event_prefix, operator, acl, mesh, peering or keyring", key)
	}
	blocks, err := namedBlocks(key, v)
	if err != nil {
		return err
	}
	into := p.Exact
	if b.prefix {
		into = p.Prefix
	}
	for _, nb := range blocks {
		rule, err := parseRule(key, nb.name, nb.body, b.res)
		if err != nil {
			return err
		}
		m := into[b.res]
		if m == nil {
			m = map[string]Rule{}
			into[b.res] = m
		}
		if old, dup := m[nb.name]; dup {
			rule = mergeRule(old, rule)
		}
		m[nb.name] = rule
	}
	return nil
}

type namedBlock struct {
	name string
	body any
}

// namedBlocks reads `key "name" { ... }` blocks, which decode as an object
// of name -> body, or in JSON also as a list of such objects.
func namedBlocks(key string, v any) ([]namedBlock, error) {
	var out []namedBlock
	addObj := func(m map[string]any) {
		names := make([]string, 0, len(m))
		for n := range m {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			out = append(out, namedBlock{n, m[n]})
		}
	}
	switch t := v.(type) {
	case map[string]any:
		addObj(t)
	case []any:
		for i, e := range t {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s[%d]: expected an object of name -> rule, got %s", key, i, describe(e))
			}
			addObj(m)
		}
	default:
		return nil, fmt.Errorf("%s: expected %s \"<name>\" { policy = \"read\" }, got %s", key, key, describe(v))
	}
	return out, nil
}

func parseRule(key, name string, body any, res Resource) (Rule, error) {
	where := fmt.Sprintf("%s %q", key, name)
	if l, ok := body.([]any); ok && len(l) == 1 {
		body = l[0]
	}
	m, ok := body.(map[string]any)
	if !ok {
		return Rule{}, fmt.Errorf("%s: expected { policy = \"read\" }, got %s", where, describe(body))
	}
	var r Rule
	for k, v := range m {
		s, ok := v.(string)
		if !ok {
			return Rule{}, fmt.Errorf("%s: %s: expected a string, got %s", where, k, describe(v))
		}
		switch k {
		case "policy":
			a, err := parseAccess(s, res == ResourceKey)
			if err != nil {
				return Rule{}, fmt.Errorf("%s: %w", where, err)
			}
			r.Access = a
		case "intentions":
			if res != ResourceService {
				return Rule{}, fmt.Errorf("%s: intentions is only for service and service_prefix rules", where)
			}
			a, err := parseAccess(s, false)
			if err != nil {
				return Rule{}, fmt.Errorf("%s: intentions: %w", where, err)
			}
			r.Intentions = a
		default:
			return Rule{}, fmt.Errorf("%s: unknown field %q: use policy%s", where, k, map[bool]string{true: " or intentions"}[res == ResourceService])
		}
	}
	if r.Access == AccessUnknown && r.Intentions == AccessUnknown {
		return Rule{}, fmt.Errorf("%s: no policy: write %s { policy = \"read\" }", where, where)
	}
	return r, nil
}

func describe(v any) string {
	switch t := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("string %q", t)
	case bool:
		return fmt.Sprintf("bool %v", t)
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	default:
		return fmt.Sprintf("%v", t)
	}
}
