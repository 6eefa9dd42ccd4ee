package configentry

import (
	"strings"

	"github.com/peerd/peerd/internal/decode"
)

// ServiceRouterConfigEntry routes a service's L7 requests by path, header,
// query parameter or method. The first matching route wins; unmatched
// requests go to the service itself.
type ServiceRouterConfigEntry struct {
	Kind      string
	Name      string
	Partition string `json:",omitempty"`
	Namespace string `json:",omitempty"`

	Routes []ServiceRoute `json:",omitempty"`

	Meta map[string]string `json:",omitempty"`
	RaftIndex
}

// ServiceRoute sends the requests Match selects to Destination.
type ServiceRoute struct {
	Match       *ServiceRouteMatch       `json:",omitempty"`
	Destination *ServiceRouteDestination `json:",omitempty"`
}

// ServiceRouteMatch selects requests.
type ServiceRouteMatch struct {
	HTTP *ServiceRouteHTTPMatch `json:",omitempty"`
}

// ServiceRouteHTTPMatch selects HTTP requests. All set criteria must match.
type ServiceRouteHTTPMatch struct {
	// At most one of PathExact, PathPrefix and PathRegex may be set.
	PathExact       string `json:",omitempty"`
	PathPrefix      string `json:",omitempty"`
	PathRegex       string `json:",omitempty"`
	CaseInsensitive bool   `json:",omitempty"`

	Header     []ServiceRouteHTTPMatchHeader     `json:",omitempty"`
	QueryParam []ServiceRouteHTTPMatchQueryParam `json:",omitempty"`
	// Methods are upper-cased by Normalize.
	Methods []string `json:",omitempty"`
}

// ServiceRouteHTTPMatchHeader matches one header. Exactly one of Present,
// Exact, Prefix, Suffix and Regex is set.
type ServiceRouteHTTPMatchHeader struct {
	Name    string
	Present bool   `json:",omitempty"`
	Exact   string `json:",omitempty"`
	Prefix  string `json:",omitempty"`
	Suffix  string `json:",omitempty"`
	Regex   string `json:",omitempty"`
	Invert  bool   `json:",omitempty"`
}

// ServiceRouteHTTPMatchQueryParam matches one query parameter. Exactly one of
// Present, Exact and Regex is set.
type ServiceRouteHTTPMatchQueryParam struct {
	Name    string
	Present bool   `json:",omitempty"`
	Exact   string `json:",omitempty"`
	Regex   string `json:",omitempty"`
}

// ServiceRouteDestination says where and how matched requests are proxied.
type ServiceRouteDestination struct {
	// Service defaults to the router's own service.
	Service       string `json:",omitempty"`
	ServiceSubset string `json:",omitempty"`
	Namespace     string `json:",omitempty"`
	Partition     string `json:",omitempty"`
	// PrefixRewrite replaces the matched PathExact or PathPrefix.
	PrefixRewrite string `json:",omitempty"`
	// RequestTimeout bounds the whole request, retries included.
	RequestTimeout decode.Duration `json:",omitempty"`
	// IdleTimeout bounds the time the request stream may be idle.
	IdleTimeout           decode.Duration `json:",omitempty"`
	NumRetries            uint32          `json:",omitempty"`
	RetryOnConnectFailure bool            `json:",omitempty"`
	RetryOnStatusCodes    []uint32        `json:",omitempty"`
	// RetryOn lists Envoy retry conditions such as "5xx" or "reset".
	RetryOn         []string             `json:",omitempty"`
	RequestHeaders  *HTTPHeaderModifiers `json:",omitempty"`
	ResponseHeaders *HTTPHeaderModifiers `json:",omitempty"`
}

func (e *ServiceRouterConfigEntry) GetKind() string            { return ServiceRouter }
func (e *ServiceRouterConfigEntry) GetName() string            { return e.Name }
func (e *ServiceRouterConfigEntry) GetPartition() string       { return e.Partition }
func (e *ServiceRouterConfigEntry) GetNamespace() string       { return e.Namespace }
func (e *ServiceRouterConfigEntry) GetMeta() map[string]string { return e.Meta }
func (e *ServiceRouterConfigEntry) GetRaftIndex() *RaftIndex   { return &e.RaftIndex }

// Normalize sets Kind and upper-cases HTTP methods.
func (e *ServiceRouterConfigEntry) Normalize() {
	e.Kind = ServiceRouter
	for _, r := range e.Routes {
		if r.Match == nil || r.Match.HTTP == nil {
			continue
		}
		for i, m := range r.Match.HTTP.Methods {
			r.Match.HTTP.Methods[i] = strings.ToUpper(m)
		}
	}
}

// Validate applies Consul's rules for service-router.
func (e *ServiceRouterConfigEntry) Validate() error {
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
	for i, r := range e.Routes {
		if err := r.validate(index("Routes", i)); err != nil {
			return err
		}
	}
	return nil
}

func (r ServiceRoute) validate(path string) error {
	eligibleForPrefixRewrite := false
	if r.Match != nil && r.Match.HTTP != nil {
		h := r.Match.HTTP
		hpath := field(field(path, "Match"), "HTTP")
		eligibleForPrefixRewrite = h.PathExact != "" || h.PathPrefix != ""
		if err := validatePathMatch(hpath, h.PathExact, h.PathPrefix, h.PathRegex, "; split this route into one route per path"); err != nil {
			return err
		}
		for j, hdr := range h.Header {
			if err := validateHeaderMatch(index(field(hpath, "Header"), j), hdr.Name, hdr.Regex, []bool{
				hdr.Present, hdr.Exact != "", hdr.Prefix != "", hdr.Suffix != "", hdr.Regex != "",
			}, "Present, Exact, Prefix, Suffix, or Regex"); err != nil {
				return err
			}
		}
		for j, q := range h.QueryParam {
			if err := validateHeaderMatch(index(field(hpath, "QueryParam"), j), q.Name, q.Regex, []bool{
				q.Present, q.Exact != "", q.Regex != "",
			}, "Present, Exact, or Regex"); err != nil {
				return err
			}
		}
		if err := validateMethods(field(hpath, "Methods"), h.Methods); err != nil {
			return err
		}
	}

	d := r.Destination
	if d == nil {
		return nil
	}
	dpath := field(path, "Destination")
	if d.PrefixRewrite != "" && !eligibleForPrefixRewrite {
		return errf(field(dpath, "PrefixRewrite"), "cannot make use of PrefixRewrite without configuring either PathExact or PathPrefix")
	}
	if err := validateTarget(dpath, d.Service, d.ServiceSubset, d.Namespace, d.Partition, "", "", ""); err != nil {
		return err
	}
	if d.RequestTimeout < 0 {
		return errf(field(dpath, "RequestTimeout"), "must not be negative")
	}
	if d.IdleTimeout < 0 {
		return errf(field(dpath, "IdleTimeout"), "must not be negative")
	}
	for j, cond := range d.RetryOn {
		if !isValidRetryCondition(cond) {
			return errf(index(field(dpath, "RetryOn"), j), "invalid retry condition %q; use one of %s", short(cond), strings.Join(retryConditions, ", "))
		}
	}
	for j, code := range d.RetryOnStatusCodes {
		if code < 100 || code > 599 {
			return errf(index(field(dpath, "RetryOnStatusCodes"), j), "%d is not an HTTP status code", code)
		}
	}
	if err := d.RequestHeaders.validate(field(dpath, "RequestHeaders")); err != nil {
		return err
	}
	return d.ResponseHeaders.validate(field(dpath, "ResponseHeaders"))
}

var retryConditions = []string{
	"5xx", "gateway-error", "reset", "connect-failure", "envoy-ratelimited", "retriable-4xx",
	"refused-stream", "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
}

func isValidRetryCondition(s string) bool {
	for _, c := range retryConditions {
		if s == c {
			return true
		}
	}
	return false
}
