// Package aclresolve turns a request's token secret into an acl.Enforcer:
// the token's policies, roles and identities compiled once into an
// authorizer, chained with the agent's default policy, and cached until
// the ACL tables change.
//
// It reads a catalog/state.Store: a server's raft state, or a client
// node's mirror, which holds tokens without their SecretID. Either way a
// secret is looked up by its SHA-256 (state.HashSecret), so a client node
// resolves tokens without holding any secret.
//
// Errors: an unknown or expired secret is ErrTokenNotFound ("ACL not
// found", Consul's text); anything else is the store failing. It imports
// nothing of peerd's but catalog/state and internal/acl.
package aclresolve

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/acl"
)

// ErrTokenNotFound is an unknown or expired secret.
var ErrTokenNotFound = errors.New("ACL not found")

// Config configures a Resolver.
type Config struct {
	// Store holds the ACL tables (servers: raft's state; clients: the
	// mirror). Required when Enabled.
	Store *state.Store
	// Enabled turns ACLs on; off, every secret resolves to management.
	Enabled bool
	// DefaultPolicy ("allow" | "deny"; "" = "deny") decides what no rule
	// of a token speaks to.
	DefaultPolicy string
	// Datacenter is this agent's datacenter: identities and policies
	// scoped to other datacenters grant nothing here. "" = "dc1".
	Datacenter string
	// Now is the clock for expiry; nil = time.Now.
	Now func() time.Time
}

// Resolver resolves secrets. It is safe for concurrent use.
type Resolver struct {
	cfg   Config
	deflt acl.Authorizer
	now   func() time.Time

	mu    sync.Mutex
	index uint64 // the ACL tables' index the cache was filled at
	// changed are the store's channels of which one closes when the ACL
	// tables change after index (state.Store.ACLWatch); nil = not read yet.
	changed []<-chan struct{}
	cache   map[string]*entry
	// policies caches compiled rules by policy ID and hash, across
	// token-cache flushes (a token change does not recompile policies).
	policies map[string]compiledPolicy
}

type entry struct {
	enforcer acl.Enforcer
	token    *state.ACLToken
	expires  *time.Time
}

type compiledPolicy struct {
	hash   string
	policy *acl.Policy
}

// maxCached bounds the token cache; past it the cache starts over.
const maxCached = 4096

// New returns a Resolver.
func New(cfg Config) (*Resolver, error) {
	if cfg.Enabled && cfg.Store == nil {
		return nil, errors.New("acl resolver: a store is required with ACLs enabled")
	}
	d, err := acl.DefaultPolicy(cfg.DefaultPolicy)
	if err != nil {
		return nil, fmt.Errorf("acl resolver: %w", err)
	}
	if cfg.Datacenter == "" {
		cfg.Datacenter = "dc1"
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Resolver{cfg: cfg, deflt: d, now: now, cache: map[string]*entry{}, policies: map[string]compiledPolicy{}}, nil
}

// Enabled reports whether ACLs are on.
func (r *Resolver) Enabled() bool { return r.cfg.Enabled }

// Enforcer is Resolve without the token (httpapi.ACLResolver's method).
func (r *Resolver) Enforcer(secret string) (acl.Enforcer, error) {
	e, _, err := r.Resolve(secret)
	return e, err
}

// Resolve turns a secret into an enforcer: "" is the anonymous token; a
// token with the global-management policy gets acl.Management(); others
// get their policies, roles and identities chained with the default
// policy. ACLs off: acl.Management(), a nil token and no error. An
// unknown or expired secret is ErrTokenNotFound. The token returned is
// shared: do not modify it.
func (r *Resolver) Resolve(secret string) (acl.Enforcer, *state.ACLToken, error) {
	if !r.cfg.Enabled {
		return acl.Enforcer{Authorizer: acl.Management()}, nil, nil
	}
	if secret == "" {
		secret = state.ACLAnonymousSecret
	}
	now := r.now()
	r.mu.Lock()
	if r.stale() {
		clear(r.cache)
		r.index, r.changed = r.cfg.Store.ACLWatch()
	}
	if e, ok := r.cache[secret]; ok {
		r.mu.Unlock()
		if e.expires != nil && !now.Before(*e.expires) {
			return acl.Enforcer{}, nil, ErrTokenNotFound
		}
		return e.enforcer, e.token, nil
	}
	r.mu.Unlock()

	readIdx, res, err := r.cfg.Store.ACLResolve(secret)
	if err != nil {
		return acl.Enforcer{}, nil, fmt.Errorf("resolve token: %w", err)
	}
	if res.Token == nil || res.Token.Expired(now) {
		return acl.Enforcer{}, nil, ErrTokenNotFound
	}
	e := &entry{token: res.Token, expires: res.Token.ExpirationTime,
		enforcer: acl.Enforcer{Authorizer: r.compile(res), AccessorID: res.Token.AccessorID}}
	r.mu.Lock()
	// Cache only what was read at the index the cache is for: a write
	// between ACLIndex and ACLResolve must not leave an answer older than
	// the cache claims to be.
	if readIdx == r.index {
		if len(r.cache) >= maxCached {
			clear(r.cache)
		}
		r.cache[secret] = e
	}
	r.mu.Unlock()
	return e.enforcer, e.token, nil
}

// stale reports whether the ACL tables changed since the cache's index.
// r.mu is held.
func (r *Resolver) stale() bool {
	if r.changed == nil {
		return true
	}
	for _, ch := range r.changed {
		select {
		case <-ch:
			return true
		default:
		}
	}
	return false
}

// compile builds the token's authorizer.
func (r *Resolver) compile(res *state.ACLResolved) acl.Authorizer {
	var policies []*acl.Policy
	for _, p := range res.Policies {
		if !r.inDatacenter(p.Datacenters) {
			continue
		}
		if p.ID == state.ACLManagementPolicyID {
			return acl.Management()
		}
		if cp := r.compiled(p); cp != nil {
			policies = append(policies, cp)
		}
	}
	for _, si := range res.ServiceIdentities {
		if si != nil && r.inDatacenter(si.Datacenters) {
			policies = append(policies, acl.ServiceIdentityPolicy(si.ServiceName))
		}
	}
	for _, ni := range res.NodeIdentities {
		if ni != nil && strings.EqualFold(ni.Datacenter, r.cfg.Datacenter) {
			policies = append(policies, acl.NodeIdentityPolicy(ni.NodeName))
		}
	}
	return acl.Chain(acl.NewPolicyAuthorizer(policies...), r.deflt)
}

// compiled returns a policy's parsed rules, from the cache when its hash
// is unchanged. Rules that do not parse (the store refuses them, so only
// a damaged snapshot holds such) grant nothing.
func (r *Resolver) compiled(p *state.ACLPolicy) *acl.Policy {
	r.mu.Lock()
	c, ok := r.policies[p.ID]
	r.mu.Unlock()
	if ok && c.hash == string(p.Hash) {
		return c.policy
	}
	parsed, err := acl.ParseRules(p.Rules)
	if err != nil {
		return nil
	}
	r.mu.Lock()
	if len(r.policies) >= maxCached {
		clear(r.policies)
	}
	r.policies[p.ID] = compiledPolicy{hash: string(p.Hash), policy: parsed}
	r.mu.Unlock()
	return parsed
}

func (r *Resolver) inDatacenter(dcs []string) bool {
	return len(dcs) == 0 || slices.ContainsFunc(dcs, func(dc string) bool { return strings.EqualFold(dc, r.cfg.Datacenter) })
}
