package policy

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/peerd/peerd/catalog/configentry"
)

// Lookup returns the config entry of a kind (configentry.ServiceRouter,
// configentry.ServiceSplitter, configentry.ServiceResolver) and name, or nil
// when there is none. It must be safe to call from the goroutine calling
// RouteRequest or Resolve, and should read one consistent snapshot.
type Lookup func(kind, name string) configentry.Entry

// Target is a service, or a subset of one, at a place: this cluster, a peer
// or another datacenter. Empty fields mean: no subset, the default
// namespace, this cluster, this datacenter. Peer and Datacenter are never
// both set by this package. Target is comparable and used as a map key.
type Target struct {
	Service    string
	Subset     string
	Namespace  string
	Peer       string
	Datacenter string
}

// String renders t as "subset.service.namespace" followed by "@peer:NAME" or
// "@dc:NAME" when remote, for logs and errors.
func (t Target) String() string {
	var b strings.Builder
	if t.Subset != "" {
		b.WriteString(t.Subset)
		b.WriteByte('.')
	}
	b.WriteString(t.Service)
	if t.Namespace != "" {
		b.WriteByte('.')
		b.WriteString(t.Namespace)
	}
	switch {
	case t.Peer != "":
		b.WriteString("@peer:")
		b.WriteString(t.Peer)
	case t.Datacenter != "":
		b.WriteString("@dc:")
		b.WriteString(t.Datacenter)
	}
	return b.String()
}

// Route is where one HTTP request goes, and how, according to the
// service-router and service-splitter of the requested service. Its Target
// is what Resolve takes next. Slices and modifiers may be shared with the
// config entries and with other Routes: treat them as read-only.
type Route struct {
	// Target is the service (and subset) chosen by the router and the
	// splitter, before the resolver's redirect and default subset.
	Target Target
	// RouteIndex is the index in the router's Routes of the route that
	// matched, or -1 when no router route matched (or there is no router).
	RouteIndex int

	// PrefixRewrite, when not empty, replaces MatchedPrefix at the start of
	// the request path; MatchedPrefix is the PathPrefix or PathExact of the
	// matched route. RewritePath does this.
	PrefixRewrite string
	MatchedPrefix string

	// RequestTimeout bounds the whole request, retries included; 0 = not
	// set by the router (the resolver's RequestTimeout may apply).
	RequestTimeout time.Duration
	// IdleTimeout bounds how long the request stream may be idle; 0 = not
	// set.
	IdleTimeout time.Duration

	// NumRetries is how many times to retry the request; 0 = no retries.
	NumRetries uint32
	// RetryOnConnectFailure retries when connecting to an instance fails.
	RetryOnConnectFailure bool
	// RetryOnStatusCodes retries on these response status codes.
	RetryOnStatusCodes []uint32
	// RetryOn lists Envoy retry conditions, such as "5xx" or "reset".
	RetryOn []string

	// RequestHeaders and ResponseHeaders combine the chosen split's
	// modifiers with the route's (the route's applied last, as Envoy
	// applies route-level modifiers after weighted-cluster ones). Apply them
	// with ApplyHeaderModifiers. nil = no change.
	RequestHeaders, ResponseHeaders *configentry.HTTPHeaderModifiers
}

// RewritePath returns path with the route's PrefixRewrite applied: the
// matched prefix (compared as the route compared it, so possibly without
// regard to case) replaced by PrefixRewrite. Without a rewrite, or when path
// does not start with the matched prefix, path is returned unchanged.
func (rt Route) RewritePath(path string) string {
	if rt.PrefixRewrite == "" || rt.MatchedPrefix == "" || !hasPrefixFold(path, rt.MatchedPrefix) {
		return path
	}
	return rt.PrefixRewrite + path[len(rt.MatchedPrefix):]
}

// RouteRequest routes an HTTP request for service through its discovery
// chain at the destination: the service-router of service picks a route
// (the first whose match matches; none = the service itself), then, unless
// the route names a subset, the service-splitter of the routed service picks
// a split with rnd (uniform in [0, 1)), following splits into the splitters
// of other services. It compiles regular expressions on every call; use a
// Cache's RouteRequest to compile them once. For TCP services, call Resolve
// on the service directly.
func RouteRequest(service string, r *http.Request, lookup Lookup, rnd func() float64) (Route, error) {
	return (*Cache)(nil).RouteRequest(service, r, lookup, rnd)
}

// RouteRequest is the package-level RouteRequest with the regular
// expressions of route matches compiled once and kept in c.
func (c *Cache) RouteRequest(service string, r *http.Request, lookup Lookup, rnd func() float64) (Route, error) {
	if lookup == nil {
		lookup = func(string, string) configentry.Entry { return nil }
	}
	rt := Route{RouteIndex: -1, Target: Target{Service: service}}
	var routeDest *configentry.ServiceRouteDestination

	router, err := routerOf(lookup, service)
	if err != nil {
		return Route{}, err
	}
	if router != nil {
		q := &lazyQuery{r: r}
		path, method := requestPath(r), requestMethod(r)
		for i := range router.Routes {
			route := &router.Routes[i]
			ok, prefix, err := c.routeMatches(route.Match, r, path, method, q)
			if err != nil {
				return Route{}, fmt.Errorf("service-router %q Routes[%d].Match.HTTP%w", router.Name, i, err)
			}
			if !ok {
				continue
			}
			rt.RouteIndex = i
			if d := route.Destination; d != nil {
				routeDest = d
				if d.Service != "" {
					rt.Target.Service = d.Service
				}
				rt.Target.Subset = d.ServiceSubset
				rt.Target.Namespace = normalNamespace(d.Namespace)
				if d.PrefixRewrite != "" {
					rt.PrefixRewrite, rt.MatchedPrefix = d.PrefixRewrite, prefix
				}
				rt.RequestTimeout = d.RequestTimeout.D()
				rt.IdleTimeout = d.IdleTimeout.D()
				rt.NumRetries = d.NumRetries
				rt.RetryOnConnectFailure = d.RetryOnConnectFailure
				rt.RetryOnStatusCodes = d.RetryOnStatusCodes
				rt.RetryOn = d.RetryOn
			}
			break
		}
	}

	var splitReq, splitResp *configentry.HTTPHeaderModifiers
	if rt.Target.Subset == "" {
		leaves, err := flattenSplits(lookup, rt.Target, nil)
		if err != nil {
			return Route{}, err
		}
		if leaves != nil {
			leaf, err := pickSplit(leaves, rnd)
			if err != nil {
				return Route{}, fmt.Errorf("service-splitter %q: %w", rt.Target.Service, err)
			}
			rt.Target = leaf.target
			splitReq, splitResp = leaf.req, leaf.resp
		}
	}
	var routeReq, routeResp *configentry.HTTPHeaderModifiers
	if routeDest != nil {
		routeReq, routeResp = routeDest.RequestHeaders, routeDest.ResponseHeaders
	}
	rt.RequestHeaders = composeHeaders(splitReq, routeReq)
	rt.ResponseHeaders = composeHeaders(splitResp, routeResp)
	return rt, nil
}

func routerOf(lookup Lookup, service string) (*configentry.ServiceRouterConfigEntry, error) {
	e := lookup(configentry.ServiceRouter, service)
	if e == nil {
		return nil, nil
	}
	router, ok := e.(*configentry.ServiceRouterConfigEntry)
	if !ok {
		return nil, fmt.Errorf("service-router %q: lookup returned a %T", service, e)
	}
	if router == nil {
		return nil, nil
	}
	return router, nil
}

func splitterOf(lookup Lookup, service string) (*configentry.ServiceSplitterConfigEntry, error) {
	e := lookup(configentry.ServiceSplitter, service)
	if e == nil {
		return nil, nil
	}
	s, ok := e.(*configentry.ServiceSplitterConfigEntry)
	if !ok {
		return nil, fmt.Errorf("service-splitter %q: lookup returned a %T", service, e)
	}
	if s == nil {
		return nil, nil
	}
	return s, nil
}

// lazyQuery parses the request's query string once, on first use.
type lazyQuery struct {
	r      *http.Request
	parsed bool
	values url.Values
}

// first returns the first value of the named query parameter, as Envoy
// matches query parameters.
func (q *lazyQuery) first(name string) (string, bool) {
	if !q.parsed {
		q.parsed = true
		if q.r != nil && q.r.URL != nil {
			q.values, _ = url.ParseQuery(q.r.URL.RawQuery)
		}
	}
	vs, ok := q.values[name]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

// routeMatches reports whether the request matches a route's match, and the
// PathExact or PathPrefix a PrefixRewrite would replace. A route without an
// HTTP match matches every request. Errors name the field, starting with
// "." so that the caller can prefix the path to the match.
func (c *Cache) routeMatches(m *configentry.ServiceRouteMatch, r *http.Request, path, method string, q *lazyQuery) (bool, string, error) {
	if m == nil || m.HTTP == nil {
		return true, "", nil
	}
	h := m.HTTP
	var prefix string
	switch {
	case h.PathExact != "":
		prefix = h.PathExact
		if !(pathMatcher{exact: h.PathExact, caseInsensitive: h.CaseInsensitive}).match(path) {
			return false, "", nil
		}
	case h.PathPrefix != "":
		prefix = h.PathPrefix
		if !(pathMatcher{prefix: h.PathPrefix, caseInsensitive: h.CaseInsensitive}).match(path) {
			return false, "", nil
		}
	case h.PathRegex != "":
		pattern := h.PathRegex
		if h.CaseInsensitive {
			// Consul makes a case-insensitive regex route by prefixing (?i).
			pattern = "(?i)" + pattern
		}
		re, err := c.fullRegex(pattern)
		if err != nil {
			return false, "", fmt.Errorf(".PathRegex: invalid regular expression %q: %w", h.PathRegex, err)
		}
		if !re.MatchString(path) {
			return false, "", nil
		}
	}
	if !methodsMatch(h.Methods, method) {
		return false, "", nil
	}
	for i, hdr := range h.Header {
		hm := headerMatcher{name: hdr.Name, invert: hdr.Invert}
		switch {
		case hdr.Exact != "":
			hm.op, hm.value = opExact, hdr.Exact
		case hdr.Prefix != "":
			hm.op, hm.value = opPrefix, hdr.Prefix
		case hdr.Suffix != "":
			hm.op, hm.value = opSuffix, hdr.Suffix
		case hdr.Regex != "":
			re, err := c.fullRegex(hdr.Regex)
			if err != nil {
				return false, "", fmt.Errorf(".Header[%d].Regex: invalid regular expression %q: %w", i, hdr.Regex, err)
			}
			hm.op, hm.re = opRegex, re
		default:
			hm.op, hm.present = opPresent, true
		}
		v, ok := headerValue(r, hdr.Name)
		if !hm.matchValue(v, ok) {
			return false, "", nil
		}
	}
	for i, qp := range h.QueryParam {
		v, ok := q.first(qp.Name)
		switch {
		case qp.Exact != "":
			if !ok || v != qp.Exact {
				return false, "", nil
			}
		case qp.Regex != "":
			re, err := c.fullRegex(qp.Regex)
			if err != nil {
				return false, "", fmt.Errorf(".QueryParam[%d].Regex: invalid regular expression %q: %w", i, qp.Regex, err)
			}
			if !ok || !re.MatchString(v) {
				return false, "", nil
			}
		default: // Present
			if !ok {
				return false, "", nil
			}
		}
	}
	return true, prefix, nil
}

// splitLeaf is one destination of a flattened splitter.
type splitLeaf struct {
	target    Target
	weight    int64 // hundredths of a percent of the traffic, 0 to 10000
	req, resp *configentry.HTTPHeaderModifiers
}

// maxSplitDepth bounds the nesting of splitters.
const maxSplitDepth = 8

// flattenSplits returns the splitter of t.Service flattened into leaves, as
// Consul's compiler flattens adjacent splitters: a split with no subset to
// another service that has a splitter is replaced by that splitter's splits,
// weights multiplied and header modifiers merged (request: the outer split's
// first; response: the inner split's first). It returns nil when t.Service
// has no splitter. stack holds the splitters being flattened, for loop
// detection.
func flattenSplits(lookup Lookup, t Target, stack []string) ([]splitLeaf, error) {
	splitter, err := splitterOf(lookup, t.Service)
	if err != nil || splitter == nil {
		return nil, err
	}
	for _, s := range stack {
		if s == t.Service {
			return nil, fmt.Errorf("service-splitter %q: circular reference: %s -> %s", t.Service, strings.Join(stack, " -> "), t.Service)
		}
	}
	if len(stack) >= maxSplitDepth {
		return nil, fmt.Errorf("service-splitter %q: splitters nested more than %d deep: %s", t.Service, maxSplitDepth, strings.Join(stack, " -> "))
	}
	stack = append(stack, t.Service)
	var leaves []splitLeaf
	for i, s := range splitter.Splits {
		w, ok := splitWeight(s.Weight)
		if !ok {
			return nil, fmt.Errorf("service-splitter %q Splits[%d].Weight: %v is not a percentage", splitter.Name, i, s.Weight)
		}
		st := Target{Service: t.Service, Subset: s.ServiceSubset, Namespace: t.Namespace}
		if s.Service != "" {
			st.Service = s.Service
		}
		if s.Namespace != "" {
			st.Namespace = normalNamespace(s.Namespace)
		}
		if st.Service != t.Service && st.Subset == "" {
			inner, err := flattenSplits(lookup, st, stack)
			if err != nil {
				return nil, err
			}
			if inner != nil {
				for _, in := range inner {
					leaves = append(leaves, splitLeaf{
						target: in.target,
						weight: (w*in.weight + 5000) / 10000, // rounded to 0.01%, as Consul does
						req:    composeHeaders(s.RequestHeaders, in.req),
						resp:   composeHeaders(in.resp, s.ResponseHeaders),
					})
				}
				continue
			}
		}
		leaves = append(leaves, splitLeaf{target: st, weight: w, req: s.RequestHeaders, resp: s.ResponseHeaders})
	}
	if len(leaves) == 0 {
		return nil, fmt.Errorf("service-splitter %q: no splits", splitter.Name)
	}
	return leaves, nil
}

// splitWeight converts a split's percentage to hundredths of a percent,
// rounded as Consul normalizes weights.
func splitWeight(w float32) (int64, bool) {
	f := math.Round(float64(w) * 100)
	if math.IsNaN(f) || f < 0 || f > 100*100 {
		return 0, false
	}
	return int64(f), true
}

// pickSplit picks a leaf with probability proportional to its weight, using
// one draw of rnd. Leaves of weight 0 are never picked.
func pickSplit(leaves []splitLeaf, rnd func() float64) (splitLeaf, error) {
	var total int64
	last := -1
	for i, l := range leaves {
		if l.weight > 0 {
			total += l.weight
			last = i
		}
	}
	if last < 0 {
		return splitLeaf{}, fmt.Errorf("no split has a positive weight")
	}
	if rnd == nil {
		return splitLeaf{}, fmt.Errorf("no random source to pick a split with")
	}
	u := rnd()
	x := int64(0)
	if u > 0 { // false for NaN too
		x = int64(math.Min(u, 1) * float64(total))
	}
	for _, l := range leaves {
		if l.weight <= 0 {
			continue
		}
		if x < l.weight {
			return l, nil
		}
		x -= l.weight
	}
	return leaves[last], nil
}

// normalNamespace maps the default namespace to "".
func normalNamespace(ns string) string {
	if ns == "default" {
		return ""
	}
	return ns
}
