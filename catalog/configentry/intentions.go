package configentry

import (
	"sort"
	"strings"
	"time"
)

// IntentionAction is what an intention does with matching traffic.
type IntentionAction string

// Intention actions.
const (
	IntentionActionAllow IntentionAction = "allow"
	IntentionActionDeny  IntentionAction = "deny"
)

// IntentionSourceType is the kind of thing an intention source names.
type IntentionSourceType string

// IntentionSourceConsul is a service in the mesh, the only source type.
const IntentionSourceConsul IntentionSourceType = "consul"

// ServiceIntentionsConfigEntry holds the intentions whose destination is one
// service (or every service, with Name "*").
type ServiceIntentionsConfigEntry struct {
	Kind string
	// Name is the destination service, or "*".
	Name      string
	Partition string `json:",omitempty"`
	Namespace string `json:",omitempty"`

	// Sources are the intentions, highest precedence first once normalized.
	Sources []*SourceIntention
	// JWT requirements are stored but not enforced by peerd.
	JWT *IntentionJWTRequirement `json:",omitempty"`

	Meta map[string]string `json:",omitempty"`
	RaftIndex
}

// SourceIntention is one intention: a source and what to do with its traffic.
type SourceIntention struct {
	// Name is the source service, or "*".
	Name string
	// Peer is the cluster peer the source lives in. It cannot be combined
	// with Partition or SamenessGroup, nor be a wildcard.
	Peer          string `json:",omitempty"`
	Partition     string `json:",omitempty"`
	Namespace     string `json:",omitempty"`
	SamenessGroup string `json:",omitempty"`
	// Action is "allow" or "deny"; it is mutually exclusive with Permissions.
	Action IntentionAction `json:",omitempty"`
	// Permissions are L7 rules, evaluated in order.
	Permissions []*IntentionPermission `json:",omitempty"`
	// Precedence is computed by Normalize; larger applies first.
	Precedence int
	// Type is always "consul"; Normalize sets it when empty.
	Type        IntentionSourceType
	Description string `json:",omitempty"`

	// Legacy fields come from intentions written through the old API.
	// Normalize clears LegacyID and the times; Validate rejects LegacyMeta.
	LegacyID         string            `json:",omitempty"`
	LegacyMeta       map[string]string `json:",omitempty"`
	LegacyCreateTime *time.Time        `json:",omitempty"`
	LegacyUpdateTime *time.Time        `json:",omitempty"`
}

// IntentionPermission is an L7 rule: an action for matching HTTP requests.
type IntentionPermission struct {
	Action IntentionAction
	HTTP   *IntentionHTTPPermission `json:",omitempty"`
	JWT    *IntentionJWTRequirement `json:",omitempty"`
}

// IntentionHTTPPermission matches HTTP requests.
type IntentionHTTPPermission struct {
	// At most one of PathExact, PathPrefix and PathRegex may be set.
	PathExact  string `json:",omitempty"`
	PathPrefix string `json:",omitempty"`
	PathRegex  string `json:",omitempty"`

	Header []IntentionHTTPHeaderPermission `json:",omitempty"`
	// Methods are upper-cased by Normalize.
	Methods []string `json:",omitempty"`
}

// IntentionHTTPHeaderPermission matches one header. Exactly one of Present,
// Exact, Prefix, Suffix, Contains and Regex is set.
type IntentionHTTPHeaderPermission struct {
	Name       string
	Present    bool   `json:",omitempty"`
	Exact      string `json:",omitempty"`
	Prefix     string `json:",omitempty"`
	Suffix     string `json:",omitempty"`
	Contains   string `json:",omitempty"`
	Regex      string `json:",omitempty"`
	Invert     bool   `json:",omitempty"`
	IgnoreCase bool   `json:",omitempty"`
}

// IntentionJWTRequirement lists JWT providers a request must satisfy.
type IntentionJWTRequirement struct {
	Providers []*IntentionJWTProvider `json:",omitempty"`
}

// IntentionJWTProvider names a jwt-provider entry and extra claims to check.
type IntentionJWTProvider struct {
	Name         string                           `json:",omitempty"`
	VerifyClaims []*IntentionJWTClaimVerification `json:",omitempty"`
}

// IntentionJWTClaimVerification is a claim path and its expected value.
type IntentionJWTClaimVerification struct {
	Path  []string `json:",omitempty"`
	Value string   `json:",omitempty"`
}

func (e *ServiceIntentionsConfigEntry) GetKind() string            { return ServiceIntentions }
func (e *ServiceIntentionsConfigEntry) GetName() string            { return e.Name }
func (e *ServiceIntentionsConfigEntry) GetPartition() string       { return e.Partition }
func (e *ServiceIntentionsConfigEntry) GetNamespace() string       { return e.Namespace }
func (e *ServiceIntentionsConfigEntry) GetMeta() map[string]string { return e.Meta }
func (e *ServiceIntentionsConfigEntry) GetRaftIndex() *RaftIndex   { return &e.RaftIndex }

// Normalize sets Kind, defaults source Type to "consul", clears the legacy
// ID and times, upper-cases HTTP methods, computes each source's Precedence
// and sorts sources by it (stably, highest first), as Consul does.
func (e *ServiceIntentionsConfigEntry) Normalize() {
	e.Kind = ServiceIntentions
	for _, src := range e.Sources {
		if src == nil {
			continue
		}
		if src.Type == "" {
			src.Type = IntentionSourceConsul
		}
		src.LegacyID = ""
		src.LegacyCreateTime = nil
		src.LegacyUpdateTime = nil
		src.Precedence = intentionPrecedence(e.Name, e.Namespace, src.Name, src.Namespace)
		for _, perm := range src.Permissions {
			if perm == nil || perm.HTTP == nil {
				continue
			}
			for i, m := range perm.HTTP.Methods {
				perm.HTTP.Methods[i] = strings.ToUpper(m)
			}
		}
	}
	sort.SliceStable(e.Sources, func(i, j int) bool {
		return precedenceOf(e.Sources[i]) > precedenceOf(e.Sources[j])
	})
}

func precedenceOf(s *SourceIntention) int {
	if s == nil {
		return -1
	}
	return s.Precedence
}

// intentionPrecedence is Consul's: 9 for exact to exact, down to 1 for
// */* to */*. An empty namespace is the default namespace, an exact value.
func intentionPrecedence(dstName, dstNS, srcName, srcNS string) int {
	var top int
	switch intentionCountExact(dstName, dstNS) {
	case 2:
		top = 9
	case 1:
		top = 6
	default:
		top = 3
	}
	return top - (2 - intentionCountExact(srcName, srcNS))
}

func intentionCountExact(name, ns string) int {
	if ns == WildcardSpecifier {
		return 0
	}
	if name == WildcardSpecifier {
		return 1
	}
	return 2
}

// Validate applies Consul's rules for service-intentions.
func (e *ServiceIntentionsConfigEntry) Validate() error {
	if e.Name == "" {
		return errf("Name", "name is required; use the destination service or \"*\"")
	}
	if err := validateIntentionWildcards("", e.Name, e.Namespace, e.Partition); err != nil {
		return err
	}
	if err := validateServiceName("Name", e.Name, true); err != nil {
		return err
	}
	if err := validateEntryTenancy(e.Partition, e.Namespace, true); err != nil {
		return err
	}
	if err := e.JWT.validate("JWT"); err != nil {
		return err
	}
	if err := validateMeta("Meta", e.Meta); err != nil {
		return err
	}
	if len(e.Sources) == 0 {
		return errf("Sources", "at least one source is required")
	}
	destIsWild := e.Name == WildcardSpecifier || e.Namespace == WildcardSpecifier

	type sourceKey struct{ name, ns, partition, peer, sameness string }
	seen := make(map[sourceKey]int, len(e.Sources))
	for i, src := range e.Sources {
		path := index("Sources", i)
		if src == nil {
			return errf(path, "must not be null")
		}
		if err := src.validate(path, destIsWild); err != nil {
			return err
		}
		k := sourceKey{src.Name, src.Namespace, src.Partition, src.Peer, src.SamenessGroup}
		if j, dup := seen[k]; dup {
			what := "source"
			switch {
			case src.Peer != "":
				what = "peer(" + src.Peer + ") source"
			case src.SamenessGroup != "":
				what = "sameness-group(" + src.SamenessGroup + ") source"
			}
			return errf(path, "defines %s %q more than once (also Sources[%d]); merge them into one source", what, short(src.Name), j)
		}
		seen[k] = i
	}
	return nil
}

func (src *SourceIntention) validate(path string, destIsWild bool) error {
	if src.Name == "" {
		return errf(field(path, "Name"), "name is required; use the source service or \"*\"")
	}
	if err := validateIntentionWildcards(path, src.Name, src.Namespace, src.Partition); err != nil {
		return err
	}
	if err := validateServiceName(field(path, "Name"), src.Name, true); err != nil {
		return err
	}
	if err := validateTenancy(field(path, "Namespace"), src.Namespace, true); err != nil {
		return err
	}
	if err := validateTenancy(field(path, "Partition"), src.Partition, false); err != nil {
		return err
	}
	if src.Peer != "" {
		if strings.Contains(src.Peer, WildcardSpecifier) {
			return errf(field(path, "Peer"), "cannot use wildcard '*' in peer; add one source per peer")
		}
		if err := validatePeerName(field(path, "Peer"), src.Peer); err != nil {
			return err
		}
		if src.Partition != "" {
			return errf(field(path, "Peer"), "cannot set Peer and Partition at the same time; a peer's services are identified by the peer alone")
		}
	}
	if err := validateSamenessGroup(field(path, "SamenessGroup"), src.SamenessGroup); err != nil {
		return err
	}
	if src.SamenessGroup != "" {
		if src.Partition != "" {
			return errf(field(path, "SamenessGroup"), "cannot set SamenessGroup and Partition at the same time")
		}
		if src.Peer != "" {
			return errf(field(path, "SamenessGroup"), "cannot set SamenessGroup and Peer at the same time")
		}
	}
	if len(src.Description) > metaValueMaxLength {
		return errf(field(path, "Description"), "description is %d bytes long; the limit is %d", len(src.Description), metaValueMaxLength)
	}
	if src.LegacyID != "" {
		return errf(field(path, "LegacyID"), "must be omitted; it is set only by the legacy intentions API")
	}
	if len(src.LegacyMeta) > 0 {
		return errf(field(path, "LegacyMeta"), "must be omitted; put metadata in the entry's Meta")
	}
	if src.LegacyCreateTime != nil {
		return errf(field(path, "LegacyCreateTime"), "must be omitted")
	}
	if src.LegacyUpdateTime != nil {
		return errf(field(path, "LegacyUpdateTime"), "must be omitted")
	}

	if len(src.Permissions) == 0 {
		switch src.Action {
		case IntentionActionAllow, IntentionActionDeny:
		default:
			return errf(field(path, "Action"), "action must be set to 'allow' or 'deny'")
		}
	} else {
		if src.Action != "" {
			return errf(field(path, "Action"), "action must be omitted if Permissions are specified; put an action in each permission")
		}
		if destIsWild {
			return errf(field(path, "Permissions"), "permissions cannot be specified on intentions with wildcarded destinations; they need an L7 destination service")
		}
	}
	if src.Type != IntentionSourceConsul {
		return errf(field(path, "Type"), "type must be set to 'consul'")
	}
	for j, perm := range src.Permissions {
		if err := perm.validate(index(field(path, "Permissions"), j)); err != nil {
			return err
		}
	}
	return nil
}

// validateIntentionWildcards is Consul's wildcard rule for intention names:
// only whole values may be wildcards, and an exact name cannot follow a
// wildcard namespace.
func validateIntentionWildcards(path, name, ns, partition string) error {
	if ns != WildcardSpecifier && strings.Contains(ns, WildcardSpecifier) {
		return errf(field(path, "Namespace"), "wildcard character '*' cannot be used with partial values")
	}
	if name != WildcardSpecifier {
		if strings.Contains(name, WildcardSpecifier) {
			return errf(field(path, "Name"), "wildcard character '*' cannot be used with partial values")
		}
		if ns == WildcardSpecifier {
			return errf(field(path, "Name"), "exact value cannot follow wildcard namespace; set Name to \"*\" or name a namespace")
		}
	}
	if strings.Contains(partition, WildcardSpecifier) {
		return errf(field(path, "Partition"), "cannot use wildcard '*' in partition")
	}
	return nil
}

func (perm *IntentionPermission) validate(path string) error {
	if perm == nil {
		return errf(path, "must not be null")
	}
	switch perm.Action {
	case IntentionActionAllow, IntentionActionDeny:
	default:
		return errf(field(path, "Action"), "action must be set to 'allow' or 'deny'")
	}
	hpath := field(path, "HTTP")
	if perm.HTTP == nil {
		return errf(hpath, "is required; describe the requests this permission matches")
	}
	h := perm.HTTP
	if err := validatePathMatch(hpath, h.PathExact, h.PathPrefix, h.PathRegex, ""); err != nil {
		return err
	}
	for k, hdr := range h.Header {
		if err := validateHeaderMatch(index(field(hpath, "Header"), k), hdr.Name, hdr.Regex, []bool{
			hdr.Present, hdr.Exact != "", hdr.Prefix != "", hdr.Suffix != "", hdr.Contains != "", hdr.Regex != "",
		}, "Present, Exact, Prefix, Suffix, Contains, or Regex"); err != nil {
			return err
		}
	}
	if err := validateMethods(field(hpath, "Methods"), h.Methods); err != nil {
		return err
	}
	if h.PathExact == "" && h.PathPrefix == "" && h.PathRegex == "" && len(h.Header) == 0 && len(h.Methods) == 0 {
		return errf(hpath, "should not be empty; match on a path, a header or a method")
	}
	return perm.JWT.validate(field(path, "JWT"))
}

// validateHeaderMatch checks a header (or query parameter) match: a name and
// exactly one match operation.
func validateHeaderMatch(path, name, regex string, ops []bool, opNames string) error {
	if name == "" {
		return errf(field(path, "Name"), "missing required Name field")
	}
	n := 0
	for _, set := range ops {
		if set {
			n++
		}
	}
	if n != 1 {
		return errf(path, "should only contain one of %s", opNames)
	}
	return validateRegex(field(path, "Regex"), regex)
}

func (r *IntentionJWTRequirement) validate(path string) error {
	if r == nil {
		return nil
	}
	for i, p := range r.Providers {
		ppath := index(field(path, "Providers"), i)
		if p == nil {
			return errf(ppath, "must not be null")
		}
		if p.Name == "" {
			return errf(field(ppath, "Name"), "JWT provider name is required")
		}
		for j, c := range p.VerifyClaims {
			if c == nil {
				return errf(index(field(ppath, "VerifyClaims"), j), "must not be null")
			}
		}
	}
	return nil
}
