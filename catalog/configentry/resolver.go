package configentry

import (
	"github.com/peerd/peerd/internal/decode"
)

// ServiceResolverConfigEntry says which instances serve a service: named
// subsets, a redirect to another service, failover targets, timeouts and load
// balancing.
type ServiceResolverConfigEntry struct {
	Kind      string
	Name      string
	Partition string `json:",omitempty"`
	Namespace string `json:",omitempty"`

	// DefaultSubset is used when a request names no subset; it must be a key
	// of Subsets.
	DefaultSubset string                           `json:",omitempty"`
	Subsets       map[string]ServiceResolverSubset `json:",omitempty"`
	// Redirect resolves another service instead; it excludes Failover.
	Redirect *ServiceResolverRedirect `json:",omitempty"`
	// Failover is keyed by subset name, or "*" for any subset.
	Failover       map[string]ServiceResolverFailover `json:",omitempty"`
	ConnectTimeout decode.Duration                    `json:",omitempty"`
	RequestTimeout decode.Duration                    `json:",omitempty"`

	PrioritizeByLocality *ServiceResolverPrioritizeByLocality `json:",omitempty"`
	LoadBalancer         *LoadBalancer                        `json:",omitempty"`

	Meta map[string]string `json:",omitempty"`
	RaftIndex
}

// ServiceResolverSubset selects instances of the service.
type ServiceResolverSubset struct {
	// Filter is a bexpr expression over service instances. peerd stores it
	// without checking its syntax.
	Filter string `json:",omitempty"`
	// OnlyPassing excludes instances whose checks are warning.
	OnlyPassing bool `json:",omitempty"`
}

// ServiceResolverRedirect names what to resolve instead of the service.
type ServiceResolverRedirect struct {
	Service       string `json:",omitempty"`
	ServiceSubset string `json:",omitempty"`
	Namespace     string `json:",omitempty"`
	Partition     string `json:",omitempty"`
	Datacenter    string `json:",omitempty"`
	Peer          string `json:",omitempty"`
	SamenessGroup string `json:",omitempty"`
}

// ServiceResolverFailover lists where traffic goes when a subset has no
// healthy instances.
type ServiceResolverFailover struct {
	Service       string `json:",omitempty"`
	ServiceSubset string `json:",omitempty"`
	// Namespace refers to another namespace; other partitions are reached
	// with Targets.
	Namespace     string                          `json:",omitempty"`
	Datacenters   []string                        `json:",omitempty"`
	Targets       []ServiceResolverFailoverTarget `json:",omitempty"`
	Policy        *ServiceResolverFailoverPolicy  `json:",omitempty"`
	SamenessGroup string                          `json:",omitempty"`
}

// ServiceResolverFailoverTarget is one failover destination, tried in order.
type ServiceResolverFailoverTarget struct {
	Service       string `json:",omitempty"`
	ServiceSubset string `json:",omitempty"`
	Partition     string `json:",omitempty"`
	Namespace     string `json:",omitempty"`
	Datacenter    string `json:",omitempty"`
	Peer          string `json:",omitempty"`
}

// LoadBalancer is the load-balancing policy for requests to the service.
type LoadBalancer struct {
	// Policy is one of "", "random", "round_robin", "least_request",
	// "ring_hash" and "maglev".
	Policy             string              `json:",omitempty"`
	RingHashConfig     *RingHashConfig     `json:",omitempty"`
	LeastRequestConfig *LeastRequestConfig `json:",omitempty"`
	// HashPolicies apply to the hash-based policies ring_hash and maglev.
	HashPolicies []HashPolicy `json:",omitempty"`
}

// RingHashConfig configures the "ring_hash" policy.
type RingHashConfig struct {
	MinimumRingSize uint64 `json:",omitempty"`
	MaximumRingSize uint64 `json:",omitempty"`
}

// LeastRequestConfig configures the "least_request" policy.
type LeastRequestConfig struct {
	ChoiceCount uint32 `json:",omitempty"`
}

// HashPolicy says what a hash-based policy hashes.
type HashPolicy struct {
	// Field is "header", "cookie" or "query_parameter"; FieldValue names it.
	Field        string        `json:",omitempty"`
	FieldValue   string        `json:",omitempty"`
	CookieConfig *CookieConfig `json:",omitempty"`
	// SourceIP hashes the source address instead of a field.
	SourceIP bool `json:",omitempty"`
	Terminal bool `json:",omitempty"`
}

// CookieConfig configures a cookie the proxy generates for hashing.
type CookieConfig struct {
	Session bool `json:",omitempty"`
	// TTL is written as nanoseconds, as Consul's API writes it.
	TTL  decode.DurationNanos `json:",omitempty"`
	Path string               `json:",omitempty"`
}

func (e *ServiceResolverConfigEntry) GetKind() string            { return ServiceResolver }
func (e *ServiceResolverConfigEntry) GetName() string            { return e.Name }
func (e *ServiceResolverConfigEntry) GetPartition() string       { return e.Partition }
func (e *ServiceResolverConfigEntry) GetNamespace() string       { return e.Namespace }
func (e *ServiceResolverConfigEntry) GetMeta() map[string]string { return e.Meta }
func (e *ServiceResolverConfigEntry) GetRaftIndex() *RaftIndex   { return &e.RaftIndex }

// Normalize sets Kind.
func (e *ServiceResolverConfigEntry) Normalize() {
	e.Kind = ServiceResolver
}

func (e *ServiceResolverConfigEntry) isSubset(name string) bool {
	_, ok := e.Subsets[name]
	return ok
}

func (e *ServiceResolverConfigEntry) inDefaultPartition() bool {
	return e.Partition == "" || e.Partition == DefaultPartition
}

// Validate applies Consul's rules for service-resolver.
func (e *ServiceResolverConfigEntry) Validate() error {
	if e.Name == "" {
		return errf("Name", "name is required")
	}
	if err := validateServiceName("Name", e.Name, false); err != nil {
		return err
	}
	if err := validateEntryTenancy(e.Partition, e.Namespace, false); err != nil {
		return err
	}
	if err := validateMeta("Meta", e.Meta); err != nil {
		return err
	}
	for _, name := range sortedKeys(e.Subsets) {
		if err := validateSubsetName(key("Subsets", name), name); err != nil {
			return err
		}
	}
	if e.DefaultSubset != "" && !e.isSubset(e.DefaultSubset) {
		return errf("DefaultSubset", "%q is not a valid subset; define it in Subsets or remove DefaultSubset", short(e.DefaultSubset))
	}
	if e.Redirect != nil {
		if len(e.Failover) > 0 {
			return errf("Redirect", "Redirect and Failover cannot both be set; a redirected service fails over with the target's resolver")
		}
		if err := e.validateRedirect(); err != nil {
			return err
		}
	}
	for _, subset := range sortedKeys(e.Failover) {
		if err := e.validateFailover(subset, e.Failover[subset]); err != nil {
			return err
		}
	}
	if e.ConnectTimeout < 0 {
		return errf("ConnectTimeout", "must not be negative")
	}
	if e.RequestTimeout < 0 {
		return errf("RequestTimeout", "must not be negative")
	}
	if err := e.PrioritizeByLocality.validate("PrioritizeByLocality"); err != nil {
		return err
	}
	return e.LoadBalancer.validate("LoadBalancer")
}

func (e *ServiceResolverConfigEntry) validateRedirect() error {
	r := e.Redirect
	const path = "Redirect"
	if *r == (ServiceResolverRedirect{}) {
		return errf(path, "redirect is empty; name a Service, ServiceSubset, Namespace, Partition, Datacenter, Peer or SamenessGroup, or remove Redirect")
	}
	if r.Datacenter != "" && !e.inDefaultPartition() {
		return errf(field(path, "Datacenter"), "cross-datacenter redirect is only supported in the default partition")
	}
	if r.Datacenter != "" && r.Partition != "" && r.Partition != e.Partition && !(r.Partition == DefaultPartition && e.Partition == "") {
		return errf(path, "cross-datacenter and cross-partition redirect is not supported")
	}
	switch {
	case r.SamenessGroup != "" && r.ServiceSubset != "":
		return errf(field(path, "SamenessGroup"), "cannot be set with ServiceSubset")
	case r.SamenessGroup != "" && r.Partition != "":
		return errf(field(path, "Partition"), "cannot be set with SamenessGroup")
	case r.SamenessGroup != "" && r.Datacenter != "":
		return errf(field(path, "SamenessGroup"), "cannot be set with Datacenter")
	case r.Peer != "" && r.ServiceSubset != "":
		return errf(field(path, "Peer"), "cannot be set with ServiceSubset; subsets of a peer's service are not visible here")
	case r.Peer != "" && r.Partition != "":
		return errf(field(path, "Partition"), "cannot be set with Peer")
	case r.Peer != "" && r.Datacenter != "":
		return errf(field(path, "Peer"), "cannot be set with Datacenter; a peer is reached by name, not datacenter")
	case r.Service == "":
		for _, f := range []struct{ name, val string }{
			{"ServiceSubset", r.ServiceSubset}, {"Namespace", r.Namespace}, {"Partition", r.Partition}, {"Peer", r.Peer},
		} {
			if f.val != "" {
				return errf(field(path, f.name), "defined without Redirect.Service; set Service too")
			}
		}
	case r.ServiceSubset != "" && r.Service == e.Name:
		if !e.isSubset(r.ServiceSubset) {
			return errf(field(path, "ServiceSubset"), "%q is not a valid subset of %q", short(r.ServiceSubset), e.Name)
		}
	}
	return validateTarget(path, r.Service, r.ServiceSubset, r.Namespace, r.Partition, r.Datacenter, r.Peer, r.SamenessGroup)
}

// validateTarget checks the names in a route, split, redirect or failover
// target; empty arguments are not checked.
func validateTarget(path, service, subset, ns, partition, dc, peer, sameness string) error {
	if service != "" {
		if err := validateServiceName(field(path, "Service"), service, false); err != nil {
			return err
		}
	}
	if subset != "" {
		if err := validateSubsetName(field(path, "ServiceSubset"), subset); err != nil {
			return err
		}
	}
	if err := validateTenancy(field(path, "Namespace"), ns, false); err != nil {
		return err
	}
	if err := validateTenancy(field(path, "Partition"), partition, false); err != nil {
		return err
	}
	if dc != "" {
		if err := validateDatacenter(field(path, "Datacenter"), dc); err != nil {
			return err
		}
	}
	if peer != "" {
		if err := validatePeerName(field(path, "Peer"), peer); err != nil {
			return err
		}
	}
	return validateSamenessGroup(field(path, "SamenessGroup"), sameness)
}

func (e *ServiceResolverConfigEntry) validateFailover(subset string, f ServiceResolverFailover) error {
	path := key("Failover", subset)
	if subset != WildcardSpecifier && !e.isSubset(subset) {
		return errf(path, "%q is not a valid subset; use a key of Subsets or \"*\"", short(subset))
	}
	if f.Service == "" && f.ServiceSubset == "" && f.Namespace == "" && len(f.Datacenters) == 0 &&
		len(f.Targets) == 0 && f.SamenessGroup == "" {
		return errf(path, "one of Service, ServiceSubset, Namespace, Targets, SamenessGroup, or Datacenters is required")
	}
	if len(f.Datacenters) != 0 && !e.inDefaultPartition() {
		return errf(field(path, "Datacenters"), "cross-datacenter failover is only supported in the default partition")
	}
	if f.ServiceSubset != "" && (f.Service == "" || f.Service == e.Name) && !e.isSubset(f.ServiceSubset) {
		return errf(field(path, "ServiceSubset"), "%q is not a valid subset of %q", short(f.ServiceSubset), e.Name)
	}
	if f.SamenessGroup != "" {
		switch {
		case len(f.Datacenters) > 0:
			return errf(field(path, "SamenessGroup"), "cannot be set with Datacenters")
		case f.ServiceSubset != "":
			return errf(field(path, "SamenessGroup"), "cannot be set with ServiceSubset")
		case len(f.Targets) > 0:
			return errf(field(path, "SamenessGroup"), "cannot be set with Targets")
		}
	}
	if len(f.Targets) != 0 {
		switch {
		case len(f.Datacenters) != 0:
			return errf(field(path, "Targets"), "cannot be set with Datacenters; list each datacenter as a target")
		case f.ServiceSubset != "":
			return errf(field(path, "Targets"), "cannot be set with ServiceSubset; set ServiceSubset on each target")
		case f.Service != "":
			return errf(field(path, "Targets"), "cannot be set with Service; set Service on each target")
		}
	}
	if err := validateTarget(path, f.Service, f.ServiceSubset, f.Namespace, "", "", "", f.SamenessGroup); err != nil {
		return err
	}
	for i, t := range f.Targets {
		tpath := index(field(path, "Targets"), i)
		switch {
		case t.Peer != "" && t.ServiceSubset != "":
			return errf(field(tpath, "Peer"), "cannot be set with ServiceSubset")
		case t.Peer != "" && t.Partition != "":
			return errf(field(tpath, "Partition"), "cannot be set with Peer")
		case t.Peer != "" && t.Datacenter != "":
			return errf(field(tpath, "Peer"), "cannot be set with Datacenter; a peer is reached by name, not datacenter")
		case t.Partition != "" && t.Datacenter != "":
			return errf(field(tpath, "Partition"), "cannot be set with Datacenter")
		case t.ServiceSubset != "" && (t.Service == "" || t.Service == e.Name) && !e.isSubset(t.ServiceSubset):
			return errf(field(tpath, "ServiceSubset"), "%q is not a valid subset of %q", short(t.ServiceSubset), e.Name)
		}
		if t == (ServiceResolverFailoverTarget{}) {
			return errf(tpath, "target is empty; set at least one of Service, ServiceSubset, Namespace, Partition, Datacenter or Peer")
		}
		if err := validateTarget(tpath, t.Service, t.ServiceSubset, t.Namespace, t.Partition, t.Datacenter, t.Peer, ""); err != nil {
			return err
		}
	}
	for i, dc := range f.Datacenters {
		if dc == "" {
			return errf(index(field(path, "Datacenters"), i), "found empty datacenter")
		}
		if err := validateDatacenter(index(field(path, "Datacenters"), i), dc); err != nil {
			return err
		}
	}
	return f.Policy.validate(field(path, "Policy"))
}

var validLBPolicies = []string{"", "random", "round_robin", "least_request", "ring_hash", "maglev"}

func (lb *LoadBalancer) validate(path string) error {
	if lb == nil {
		return nil
	}
	ok := false
	for _, p := range validLBPolicies {
		ok = ok || lb.Policy == p
	}
	if !ok {
		return errf(field(path, "Policy"), "policy %q is not supported; use random, round_robin, least_request, ring_hash or maglev", short(lb.Policy))
	}
	if lb.Policy != "ring_hash" && lb.RingHashConfig != nil {
		return errf(field(path, "RingHashConfig"), "RingHashConfig specified for incompatible load balancing policy %q", lb.Policy)
	}
	if lb.Policy != "least_request" && lb.LeastRequestConfig != nil {
		return errf(field(path, "LeastRequestConfig"), "LeastRequestConfig specified for incompatible load balancing policy %q", lb.Policy)
	}
	hashBased := lb.Policy == "ring_hash" || lb.Policy == "maglev"
	if !hashBased && len(lb.HashPolicies) > 0 {
		return errf(field(path, "HashPolicies"), "HashPolicies specified for non-hash-based Policy %q; use ring_hash or maglev", lb.Policy)
	}
	if c := lb.RingHashConfig; c != nil && c.MaximumRingSize != 0 && c.MinimumRingSize > c.MaximumRingSize {
		return errf(field(path, "RingHashConfig"), "MinimumRingSize %d is larger than MaximumRingSize %d", c.MinimumRingSize, c.MaximumRingSize)
	}
	for i, hp := range lb.HashPolicies {
		hpath := index(field(path, "HashPolicies"), i)
		switch hp.Field {
		case "", "header", "cookie", "query_parameter":
		default:
			return errf(field(hpath, "Field"), "%q is not a supported field; use header, cookie or query_parameter", short(hp.Field))
		}
		switch {
		case hp.SourceIP && hp.Field != "":
			return errf(hpath, "a single hash policy cannot hash both a source address and a %q", hp.Field)
		case hp.SourceIP && hp.FieldValue != "":
			return errf(hpath, "a FieldValue cannot be specified when hashing SourceIP")
		case hp.Field != "" && hp.FieldValue == "":
			return errf(field(hpath, "FieldValue"), "field %q was specified without a FieldValue", hp.Field)
		case hp.FieldValue != "" && hp.Field == "":
			return errf(field(hpath, "Field"), "FieldValue requires a Field to apply to")
		}
		if hp.CookieConfig != nil {
			if hp.Field != "cookie" {
				return errf(field(hpath, "CookieConfig"), "cookie_config provided for %q; set Field to \"cookie\"", hp.Field)
			}
			if hp.CookieConfig.Session && hp.CookieConfig.TTL != 0 {
				return errf(field(hpath, "CookieConfig"), "a session cookie cannot have an associated TTL")
			}
			if hp.CookieConfig.TTL < 0 {
				return errf(field(field(hpath, "CookieConfig"), "TTL"), "must not be negative")
			}
		}
	}
	return nil
}
