package policy

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/peerd/peerd/catalog/configentry"
)

// Caller is who is calling, as read from its verified SPIFFE certificate.
type Caller struct {
	// Service is the caller's service name.
	Service string
	// Namespace is the caller's namespace; "" is the default namespace.
	Namespace string
	// Peer is the local name of the peer the caller lives in; "" for a
	// caller in this cluster.
	Peer string
}

// Decision is the outcome of authorizing a caller.
type Decision struct {
	// Allow says whether the connection or request may proceed.
	Allow bool
	// Reason is a human-readable account of the decision, naming the
	// intention that decided it, or saying that none matched, e.g.
	// `intention "web" from peer "a" -> "billing": deny`.
	Reason string
	// Precedence is Consul's precedence (1 to 9) of the deciding source;
	// 0 when no intention matched and the default applied.
	Precedence int
}

// Intentions is a compiled set of service-intentions entries. It is
// immutable and safe for concurrent use. A nil *Intentions denies everything.
type Intentions struct {
	// byDst holds, per destination with an entry of its own, that entry's
	// sources followed by those of the wildcard entries, in decision order.
	byDst map[string][]*compiledSource
	// wildcard holds the sources of the "*" entries, in decision order; they
	// apply to destinations without an entry of their own.
	wildcard []*compiledSource
}

// compiledSource is one source of an intention, ready to match callers.
type compiledSource struct {
	dst        string // the entry's Name: the destination or "*"
	name       string // source service or "*"
	namespace  string // "" = any ("*"), otherwise the namespace, "default" for ""
	peer       string
	never      bool // matches no caller: a sameness group or a non-default partition
	allow      bool // for L4 sources
	perms      []compiledPermission
	l7         bool // the source has Permissions
	precedence int

	// Reasons, built once: the decision for an L4 source, and for an L7
	// source the L4 deny and the deny when no permission matches.
	reason, reasonL4Deny, reasonNoPerm string
}

// compiledPermission is one L7 permission of a source.
type compiledPermission struct {
	allow bool
	// needsJWT is set on an allow permission that requires a JWT: peerd
	// does not verify JWTs, so it never matches (fail closed).
	needsJWT bool
	reason   string // the decision when this permission matches
	path     pathMatcher
	headers  []headerMatcher
	methods  []string
}

// CompileIntentions compiles service-intentions entries. Entries are
// expected to have passed Validate; CompileIntentions still checks what it
// relies on and returns an error naming the entry and field for a missing
// HTTP match, a bad regular expression or two entries for the same
// destination. Nil entries, sources and permissions are skipped. Entries in a
// namespace other than the default one (or "*") are ignored: peerd's services
// all live in the default namespace.
func CompileIntentions(entries []*configentry.ServiceIntentionsConfigEntry) (*Intentions, error) {
	in := &Intentions{byDst: make(map[string][]*compiledSource)}
	type key struct{ name, ns string }
	seen := make(map[key]bool, len(entries))
	for _, e := range entries {
		if e == nil {
			continue
		}
		ns := e.Namespace
		switch ns {
		case "", "default":
			ns = "default"
		case configentry.WildcardSpecifier:
		default:
			continue
		}
		k := key{e.Name, ns}
		if seen[k] {
			return nil, fmt.Errorf("service-intentions %q: more than one entry for this destination", e.Name)
		}
		seen[k] = true
		srcs, err := compileEntry(e)
		if err != nil {
			return nil, err
		}
		if e.Name == configentry.WildcardSpecifier {
			in.wildcard = append(in.wildcard, srcs...)
		} else {
			in.byDst[e.Name] = append(in.byDst[e.Name], srcs...)
		}
	}
	sortSources(in.wildcard)
	for dst, srcs := range in.byDst {
		all := make([]*compiledSource, 0, len(srcs)+len(in.wildcard))
		all = append(all, srcs...)
		all = append(all, in.wildcard...)
		sortSources(all)
		in.byDst[dst] = all
	}
	return in, nil
}

// sortSources orders sources by decreasing precedence, keeping the given
// order among equals.
func sortSources(s []*compiledSource) {
	sort.SliceStable(s, func(i, j int) bool { return s[i].precedence > s[j].precedence })
}

func compileEntry(e *configentry.ServiceIntentionsConfigEntry) ([]*compiledSource, error) {
	out := make([]*compiledSource, 0, len(e.Sources))
	for i, src := range e.Sources {
		if src == nil {
			continue
		}
		cs := &compiledSource{
			dst:        e.Name,
			name:       src.Name,
			peer:       src.Peer,
			allow:      src.Action == configentry.IntentionActionAllow,
			l7:         len(src.Permissions) > 0,
			precedence: consulPrecedence(e.Name, e.Namespace, src.Name, src.Namespace),
		}
		switch src.Namespace {
		case "", "default":
			cs.namespace = "default"
		case configentry.WildcardSpecifier:
			cs.namespace = ""
		default:
			cs.namespace = src.Namespace
		}
		if src.SamenessGroup != "" || (src.Partition != "" && src.Partition != configentry.DefaultPartition) {
			// Sameness groups and admin partitions are Consul Enterprise
			// features peerd has not: such a source can match no caller.
			cs.never = true
		}
		desc := cs.describe()
		entryJWT := e.JWT != nil && len(e.JWT.Providers) > 0
		if entryJWT && cs.allow && !cs.l7 {
			// peerd does not verify JWTs: an allow that requires one
			// cannot be satisfied, so it denies (fail closed).
			cs.allow = false
			desc += " (requires a JWT, which peerd does not verify)"
		}
		cs.reason = desc + ": " + action(cs.allow)
		cs.reasonL4Deny = desc + ": deny (it has L7 permissions, which deny traffic that is not HTTP)"
		cs.reasonNoPerm = desc + ": no permission matches the request: deny"
		for j, perm := range src.Permissions {
			if perm == nil {
				continue
			}
			path := fmt.Sprintf("Sources[%d].Permissions[%d]", i, j)
			cp, err := compilePermission(perm, path)
			if err != nil {
				return nil, fmt.Errorf("service-intentions %q %w", e.Name, err)
			}
			if cp.allow && (entryJWT || (perm.JWT != nil && len(perm.JWT.Providers) > 0)) {
				cp.needsJWT = true
			}
			cp.reason = fmt.Sprintf("%s: Permissions[%d] (%s) matches: %s", desc, j, cp.describe(), action(cp.allow))
			cs.perms = append(cs.perms, cp)
		}
		out = append(out, cs)
	}
	return out, nil
}

func compilePermission(perm *configentry.IntentionPermission, path string) (compiledPermission, error) {
	cp := compiledPermission{allow: perm.Action == configentry.IntentionActionAllow}
	h := perm.HTTP
	if h == nil {
		return cp, fmt.Errorf("%s.HTTP: missing; a permission must match HTTP requests", path)
	}
	cp.path = pathMatcher{exact: h.PathExact, prefix: h.PathPrefix}
	if h.PathRegex != "" {
		re, err := compileFullRegex(h.PathRegex)
		if err != nil {
			return cp, fmt.Errorf("%s.HTTP.PathRegex: invalid regular expression %q: %w", path, h.PathRegex, err)
		}
		cp.path.re = re
	}
	for k, hdr := range h.Header {
		m := headerMatcher{name: http.CanonicalHeaderKey(hdr.Name), invert: hdr.Invert, ignoreCase: hdr.IgnoreCase}
		switch {
		case hdr.Exact != "":
			m.op, m.value = opExact, hdr.Exact
		case hdr.Prefix != "":
			m.op, m.value = opPrefix, hdr.Prefix
		case hdr.Suffix != "":
			m.op, m.value = opSuffix, hdr.Suffix
		case hdr.Contains != "":
			m.op, m.value = opContains, hdr.Contains
		case hdr.Regex != "":
			re, err := compileFullRegex(hdr.Regex)
			if err != nil {
				return cp, fmt.Errorf("%s.HTTP.Header[%d].Regex: invalid regular expression %q: %w", path, k, hdr.Regex, err)
			}
			m.op, m.re = opRegex, re
		default:
			// Present, or nothing set, which Validate rejects; Consul's
			// translation of a bare name is a presence test.
			m.op, m.present = opPresent, true
		}
		cp.headers = append(cp.headers, m)
	}
	cp.methods = upperAll(h.Methods)
	return cp, nil
}

// consulPrecedence is Consul's intention precedence: 9 for an exact source
// and destination, down to 1 for wildcards on both sides. An empty namespace
// is the default namespace, an exact value.
func consulPrecedence(dstName, dstNS, srcName, srcNS string) int {
	top := 3
	switch exactness(dstName, dstNS) {
	case 2:
		top = 9
	case 1:
		top = 6
	}
	return top - (2 - exactness(srcName, srcNS))
}

func exactness(name, ns string) int {
	switch {
	case ns == configentry.WildcardSpecifier:
		return 0
	case name == configentry.WildcardSpecifier:
		return 1
	}
	return 2
}

func (s *compiledSource) matches(c Caller) bool {
	if s.never || s.peer != c.Peer {
		return false
	}
	if s.name != configentry.WildcardSpecifier && s.name != c.Service {
		return false
	}
	if s.namespace != "" {
		ns := c.Namespace
		if ns == "" {
			ns = "default"
		}
		if s.namespace != ns {
			return false
		}
	}
	return true
}

// decisive returns the highest-precedence source matching c for dst, or nil.
func (in *Intentions) decisive(dst string, c Caller) *compiledSource {
	if in == nil {
		return nil
	}
	srcs, ok := in.byDst[dst]
	if !ok {
		srcs = in.wildcard
	}
	for _, s := range srcs {
		if s.matches(c) {
			return s
		}
	}
	return nil
}

// NeedsL7 reports whether the source that decides for c calling dst has L7
// permissions, so that each HTTP request must be authorized on its own. When
// it is false, Authorize with a nil request gives the decision for the whole
// connection.
func (in *Intentions) NeedsL7(dst string, c Caller) bool {
	s := in.decisive(dst, c)
	return s != nil && s.l7
}

// Authorize decides whether c may call dst. With r nil it is the L4 decision
// for a connection: a deciding source with L7 permissions then denies, as
// Consul does for a TCP service. With a request, the permissions of the
// deciding source are tried in order and the first whose HTTP match matches
// decides; none matching is a deny. When no source matches, the decision is
// deny, for local callers too.
func (in *Intentions) Authorize(dst string, c Caller, r *http.Request) Decision {
	s := in.decisive(dst, c)
	if s == nil {
		if c.Peer != "" {
			return Decision{Reason: fmt.Sprintf("no intention allows %q from peer %q -> %q (default deny across peers)", c.Service, c.Peer, dst)}
		}
		return Decision{Reason: fmt.Sprintf("no intention allows %q -> %q (default deny, applied to local callers too)", c.Service, dst)}
	}
	switch {
	case !s.l7:
		return Decision{Allow: s.allow, Reason: s.reason, Precedence: s.precedence}
	case r == nil:
		return Decision{Reason: s.reasonL4Deny, Precedence: s.precedence}
	}
	path, method := requestPath(r), requestMethod(r)
	for i := range s.perms {
		p := &s.perms[i]
		if p.match(r, path, method) {
			return Decision{Allow: p.allow, Reason: p.reason, Precedence: s.precedence}
		}
	}
	return Decision{Reason: s.reasonNoPerm, Precedence: s.precedence}
}

func (p *compiledPermission) match(r *http.Request, path, method string) bool {
	if p.needsJWT || !p.path.match(path) || !methodsMatch(p.methods, method) {
		return false
	}
	for i := range p.headers {
		h := &p.headers[i]
		v, ok := headerValue(r, h.name)
		if !h.matchValue(v, ok) {
			return false
		}
	}
	return true
}

func (p *compiledPermission) describe() string {
	parts := []string{p.path.describe()}
	if len(p.methods) > 0 {
		parts = append(parts, "methods "+strings.Join(p.methods, ","))
	}
	if len(p.headers) > 0 {
		parts = append(parts, fmt.Sprintf("%d header match(es)", len(p.headers)))
	}
	return strings.Join(parts, ", ")
}

func (s *compiledSource) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "intention %q", s.name)
	if s.peer != "" {
		fmt.Fprintf(&b, " from peer %q", s.peer)
	}
	fmt.Fprintf(&b, " -> %q", s.dst)
	return b.String()
}

func action(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}
