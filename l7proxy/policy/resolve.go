package policy

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
)

// Load-balancing policies a Resolution may name.
const (
	LBLeastRequest = "least_request"
	LBRoundRobin   = "round_robin"
	LBRandom       = "random"
)

// DefaultConnectTimeout is the connect timeout of a target whose resolver
// sets none, as in Consul.
const DefaultConnectTimeout = 5 * time.Second

// maxRedirects bounds a chain of service-resolver redirects.
const maxRedirects = 8

// Resolution says which instances serve a target: the primary target and
// its failover targets, each with its subset filter, and how to balance and
// time out connections to them. Its maps and slices belong to the caller.
type Resolution struct {
	// Candidates are the primary target first (after any redirect and
	// default subset), then the failover targets in the order to try them.
	// No target appears twice.
	Candidates []Target
	// Filters holds the subset filter of each candidate that has one; a
	// candidate without an entry (nil) selects all instances.
	Filters map[Target]*Filter
	// OnlyPassing holds true for candidates whose subset excludes
	// instances with warning checks.
	OnlyPassing map[Target]bool
	// LoadBalancer is LBLeastRequest (the default), LBRoundRobin or
	// LBRandom. The hash-based policies ring_hash and maglev fall back to
	// LBLeastRequest, with a Note.
	LoadBalancer string
	// ConnectTimeout is the primary resolver's, DefaultConnectTimeout when
	// it sets none.
	ConnectTimeout time.Duration
	// RequestTimeout is the primary resolver's; 0 = none (a route's
	// RequestTimeout, when set, takes precedence).
	RequestTimeout time.Duration
	// Notes report configuration that was accepted but not (fully) applied.
	Notes []string
}

// note adds a note unless it is there already.
func (res *Resolution) note(n string) {
	for _, have := range res.Notes {
		if have == n {
			return
		}
	}
	res.Notes = append(res.Notes, n)
}

// Select returns the instances among nodes that serve candidate t: those
// passing t's subset filter and healthy enough. Instances whose aggregated
// check status is critical or maintenance never are; warning ones are unless
// t's subset sets OnlyPassing. nodes should be the instances of t.Service
// where t is (this cluster, the peer or the datacenter).
func (res *Resolution) Select(t Target, nodes []state.CheckServiceNode) []state.CheckServiceNode {
	f := res.Filters[t]
	onlyPassing := res.OnlyPassing[t]
	var out []state.CheckServiceNode
	for _, n := range nodes {
		switch state.AggregatedStatus(n.Checks) {
		case state.HealthPassing:
		case state.HealthWarning:
			if onlyPassing {
				continue
			}
		default:
			continue
		}
		if f.Match(n) {
			out = append(out, n)
		}
	}
	return out
}

// Resolve applies the service-resolver of t.Service to t (see the Cache
// method); it compiles subset filters on every call.
func Resolve(t Target, lookup Lookup) (Resolution, error) {
	return (*Cache)(nil).Resolve(t, lookup)
}

// Resolve applies the service-resolver of t.Service to t, with subset
// filters compiled once and kept in c:
//
//   - Redirect (to another Service, ServiceSubset, Namespace, Peer or
//     Datacenter) replaces the target; a redirect to another service in this
//     cluster and datacenter follows that service's own resolver, up to 8
//     redirects, and a loop is an error.
//   - DefaultSubset applies when the target names no subset; a subset the
//     resolver does not define is an error naming it.
//   - Failover, keyed by the subset or "*", adds candidates in order: the
//     Targets (an empty Service means the same service), or one per
//     Datacenter, or the single Service/ServiceSubset. A failover target in
//     this cluster and datacenter goes through its own resolver's redirect
//     and default subset (not its failover), as in Consul.
//
// Targets at a Peer or in another Datacenter are taken as they are: their
// resolvers live there. A subset on a peer target is dropped, with a Note.
// The LoadBalancer and timeouts are those of the primary target's resolver.
func (c *Cache) Resolve(t Target, lookup Lookup) (Resolution, error) {
	if lookup == nil {
		lookup = func(string, string) configentry.Entry { return nil }
	}
	res := Resolution{
		Filters:        make(map[Target]*Filter),
		OnlyPassing:    make(map[Target]bool),
		LoadBalancer:   LBLeastRequest,
		ConnectTimeout: DefaultConnectTimeout,
	}
	t.Namespace = normalNamespace(t.Namespace)
	primary, rs, err := resolveTarget(t, lookup, &res)
	if err != nil {
		return Resolution{}, err
	}
	if err := c.addCandidate(&res, primary, rs, lookup); err != nil {
		return Resolution{}, err
	}
	if rs == nil {
		return res, nil
	}

	if rs.ConnectTimeout > 0 {
		res.ConnectTimeout = rs.ConnectTimeout.D()
	}
	res.RequestTimeout = rs.RequestTimeout.D()
	if lb := rs.LoadBalancer; lb != nil {
		switch lb.Policy {
		case "", LBLeastRequest:
		case LBRoundRobin, LBRandom:
			res.LoadBalancer = lb.Policy
		default:
			res.note(fmt.Sprintf("service-resolver %q: load balancer policy %q is not supported by peerd; using %s", rs.Name, lb.Policy, LBLeastRequest))
		}
	}
	if p := rs.PrioritizeByLocality; p != nil && p.Mode == "failover" {
		res.note(fmt.Sprintf("service-resolver %q: PrioritizeByLocality is not supported by peerd; ignored", rs.Name))
	}

	fo, ok := rs.Failover[primary.Subset]
	key := primary.Subset
	if !ok {
		fo, ok = rs.Failover[configentry.WildcardSpecifier]
		key = configentry.WildcardSpecifier
	}
	if !ok {
		return res, nil
	}
	fpath := fmt.Sprintf("service-resolver %q Failover[%q]", rs.Name, key)
	if fo.SamenessGroup != "" {
		res.note(fpath + ": SamenessGroup is a Consul Enterprise feature; ignored")
	}
	if fo.Policy != nil && fo.Policy.Mode == "order-by-locality" {
		res.note(fpath + ": Policy order-by-locality is not supported by peerd; targets are tried in order")
	}
	var failovers []Target
	switch {
	case len(fo.Datacenters) > 0:
		for _, dc := range fo.Datacenters {
			failovers = append(failovers, rewriteTarget(primary, rewrite{
				service: fo.Service, subset: fo.ServiceSubset, namespace: fo.Namespace, datacenter: dc,
			}))
		}
	case len(fo.Targets) > 0:
		for _, ft := range fo.Targets {
			if ft.Partition != "" && ft.Partition != configentry.DefaultPartition {
				res.note(fmt.Sprintf("%s: target partition %q ignored; peerd has only the default partition", fpath, ft.Partition))
			}
			failovers = append(failovers, rewriteTarget(primary, rewrite{
				service: ft.Service, subset: ft.ServiceSubset, namespace: ft.Namespace,
				datacenter: ft.Datacenter, peer: ft.Peer,
			}))
		}
	case fo.Service != "" || fo.ServiceSubset != "" || fo.Namespace != "":
		failovers = append(failovers, rewriteTarget(primary, rewrite{
			service: fo.Service, subset: fo.ServiceSubset, namespace: fo.Namespace,
		}))
	}
	for _, ft := range failovers {
		if ft == primary {
			continue // Consul never fails over to the target itself
		}
		final, frs, err := resolveTarget(ft, lookup, &res)
		if err != nil {
			return Resolution{}, fmt.Errorf("%s: target %s: %w", fpath, ft, err)
		}
		if err := c.addCandidate(&res, final, frs, lookup); err != nil {
			return Resolution{}, fmt.Errorf("%s: target %s: %w", fpath, ft, err)
		}
	}
	return res, nil
}

// addCandidate appends t to the candidates unless it is there already, with
// its subset's filter. rs is t's resolver (nil for remote targets and
// services without one); for a target in another datacenter, the subset is
// looked up in the local resolver of its service, which Consul assumes is
// replicated to every datacenter.
func (c *Cache) addCandidate(res *Resolution, t Target, rs *configentry.ServiceResolverConfigEntry, lookup Lookup) error {
	for _, have := range res.Candidates {
		if have == t {
			return nil
		}
	}
	res.Candidates = append(res.Candidates, t)
	if t.Subset == "" {
		return nil
	}
	if rs == nil && t.Datacenter != "" {
		var err error
		if rs, err = resolverOf(lookup, t.Service); err != nil {
			return err
		}
	}
	subset, ok := lookupSubset(rs, t.Subset)
	if !ok {
		if t.Datacenter != "" {
			res.note(fmt.Sprintf("target %s: subset %q is not defined here; the datacenter's own resolver decides which instances it has", t, t.Subset))
			return nil
		}
		return unknownSubset(t, rs)
	}
	f, err := c.Filter(subset.Filter)
	if err != nil {
		return fmt.Errorf("service-resolver %q Subsets[%q].Filter: %w", rs.Name, t.Subset, err)
	}
	if f != nil {
		res.Filters[t] = f
	}
	if subset.OnlyPassing {
		res.OnlyPassing[t] = true
	}
	return nil
}

func lookupSubset(rs *configentry.ServiceResolverConfigEntry, name string) (configentry.ServiceResolverSubset, bool) {
	if rs == nil {
		return configentry.ServiceResolverSubset{}, false
	}
	s, ok := rs.Subsets[name]
	return s, ok
}

func unknownSubset(t Target, rs *configentry.ServiceResolverConfigEntry) error {
	if rs == nil {
		return fmt.Errorf("service %q has no service-resolver, so no subset %q", t.Service, t.Subset)
	}
	names := make([]string, 0, len(rs.Subsets))
	for n := range rs.Subsets {
		names = append(names, n)
	}
	sort.Strings(names)
	known := "none"
	if len(names) > 0 {
		known = strings.Join(names, ", ")
	}
	return fmt.Errorf("service-resolver %q: service %q has no subset %q (subsets: %s)", rs.Name, t.Service, t.Subset, known)
}

func resolverOf(lookup Lookup, service string) (*configentry.ServiceResolverConfigEntry, error) {
	e := lookup(configentry.ServiceResolver, service)
	if e == nil {
		return nil, nil
	}
	rs, ok := e.(*configentry.ServiceResolverConfigEntry)
	if !ok {
		return nil, fmt.Errorf("service-resolver %q: lookup returned a %T", service, e)
	}
	if rs == nil {
		return nil, nil
	}
	return rs, nil
}

// resolveTarget follows redirects and applies the default subset, as
// Consul's compiler does for one resolver node, and checks that the subset
// exists. It returns the final target and its resolver, nil for a remote
// target or a service without a resolver.
func resolveTarget(t Target, lookup Lookup, res *Resolution) (Target, *configentry.ServiceResolverConfigEntry, error) {
	seen := make(map[Target]bool)
	history := []string{t.String()}
	redirects := 0
	for {
		if t.Peer != "" {
			if t.Subset != "" {
				res.note(fmt.Sprintf("target %s: subset %q dropped; subsets of a peer's service are the peer's to resolve", t, t.Subset))
				t.Subset = ""
			}
			return t, nil, nil
		}
		if t.Datacenter != "" {
			return t, nil, nil
		}
		if seen[t] {
			return Target{}, nil, fmt.Errorf("circular service-resolver redirect: %s", strings.Join(history, " -> "))
		}
		seen[t] = true
		rs, err := resolverOf(lookup, t.Service)
		if err != nil {
			return Target{}, nil, err
		}
		if rs == nil {
			if t.Subset != "" {
				return Target{}, nil, unknownSubset(t, nil)
			}
			return t, nil, nil
		}
		if r := rs.Redirect; r != nil {
			if r.SamenessGroup != "" {
				res.note(fmt.Sprintf("service-resolver %q Redirect.SamenessGroup is a Consul Enterprise feature; ignored", rs.Name))
			}
			next := rewriteTarget(t, rewrite{
				service: r.Service, subset: r.ServiceSubset, namespace: r.Namespace,
				datacenter: r.Datacenter, peer: r.Peer,
			})
			if next != t {
				redirects++
				history = append(history, next.String())
				if redirects > maxRedirects {
					return Target{}, nil, fmt.Errorf("service-resolver %q: more than %d redirects: %s", rs.Name, maxRedirects, strings.Join(history, " -> "))
				}
				t = next
				continue
			}
		}
		if t.Subset == "" && rs.DefaultSubset != "" {
			t.Subset = rs.DefaultSubset
			if _, ok := rs.Subsets[t.Subset]; !ok {
				return Target{}, nil, fmt.Errorf("service-resolver %q DefaultSubset: %w", rs.Name, unknownSubset(t, rs))
			}
			continue
		}
		if t.Subset != "" {
			if _, ok := rs.Subsets[t.Subset]; !ok {
				return Target{}, nil, unknownSubset(t, rs)
			}
		}
		return t, rs, nil
	}
}

// rewrite is a redirect or failover destination; empty fields keep the
// target's value, except peer, which is always taken.
type rewrite struct {
	service, subset, namespace, datacenter, peer string
}

// rewriteTarget applies a redirect or failover destination to t the way
// Consul's compiler does: another service resets the subset; a namespace is
// taken when given (and, with a peer, even when empty); the peer is always
// the rewrite's, and a peer target has no datacenter.
func rewriteTarget(t Target, r rewrite) Target {
	out := t
	if r.service != "" && r.service != t.Service {
		out.Service = r.service
		out.Subset = ""
	}
	if r.subset != "" {
		out.Subset = r.subset
	}
	if r.namespace != "" || r.peer != "" {
		out.Namespace = normalNamespace(r.namespace)
	}
	if r.datacenter != "" {
		out.Datacenter = r.datacenter
	}
	out.Peer = r.peer
	if out.Peer != "" {
		out.Datacenter = ""
	}
	return out
}
