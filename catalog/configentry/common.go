package configentry

import (
	"encoding/json"
	"strings"

	"github.com/peerd/peerd/internal/decode"
)

// MeshGatewayMode says whether and how upstream mesh traffic goes through a
// mesh gateway.
type MeshGatewayMode string

// Mesh gateway modes.
const (
	// MeshGatewayModeDefault defers to the next layer of configuration.
	MeshGatewayModeDefault MeshGatewayMode = ""
	// MeshGatewayModeNone dials upstreams directly.
	MeshGatewayModeNone MeshGatewayMode = "none"
	// MeshGatewayModeLocal goes through a mesh gateway in the local cluster.
	MeshGatewayModeLocal MeshGatewayMode = "local"
	// MeshGatewayModeRemote goes through a mesh gateway in the remote cluster.
	MeshGatewayModeRemote MeshGatewayMode = "remote"
)

// MeshGatewayConfig controls how mesh gateways are used for upstreams.
type MeshGatewayConfig struct {
	Mode MeshGatewayMode `json:",omitempty"`
}

func (c MeshGatewayConfig) validate(path string) error {
	switch c.Mode {
	case MeshGatewayModeDefault, MeshGatewayModeNone, MeshGatewayModeLocal, MeshGatewayModeRemote:
		return nil
	}
	return errf(field(path, "Mode"), "invalid mesh gateway mode %q; use \"none\", \"local\", \"remote\" or leave it empty", short(string(c.Mode)))
}

// ProxyMode says how a proxy's listeners are reached.
type ProxyMode string

// Proxy modes.
const (
	ProxyModeDefault     ProxyMode = ""
	ProxyModeTransparent ProxyMode = "transparent"
	ProxyModeDirect      ProxyMode = "direct"
)

func validateProxyMode(path string, m ProxyMode) error {
	switch m {
	case ProxyModeDefault, ProxyModeDirect, ProxyModeTransparent:
		return nil
	}
	return errf(path, "invalid proxy mode %q; use \"direct\", \"transparent\" or leave it empty", short(string(m)))
}

// TransparentProxyConfig configures a proxy in transparent mode.
type TransparentProxyConfig struct {
	// OutboundListenerPort is the port outbound traffic is redirected to.
	OutboundListenerPort int `json:",omitempty"`
	// DialedDirectly lets transparent proxies dial this proxy's instances
	// directly, bypassing the discovery chain.
	DialedDirectly bool `json:",omitempty"`
}

func (c *TransparentProxyConfig) validate(path string) error {
	if c == nil {
		return nil
	}
	return validatePort(field(path, "OutboundListenerPort"), c.OutboundListenerPort)
}

// MutualTLSMode says whether a proxy accepts non-mTLS traffic.
type MutualTLSMode string

// Mutual TLS modes.
const (
	MutualTLSModeDefault    MutualTLSMode = ""
	MutualTLSModeStrict     MutualTLSMode = "strict"
	MutualTLSModePermissive MutualTLSMode = "permissive"
)

func validateMutualTLSMode(path string, m MutualTLSMode) error {
	switch m {
	case MutualTLSModeDefault, MutualTLSModeStrict, MutualTLSModePermissive:
		return nil
	}
	return errf(path, "invalid mutual TLS mode %q; use \"strict\", \"permissive\" or leave it empty", short(string(m)))
}

// ExposeConfig describes HTTP paths a proxy exposes outside the mesh.
type ExposeConfig struct {
	// Checks exposes the paths of the service's HTTP and gRPC checks.
	Checks bool `json:",omitempty"`
	// Paths lists further paths to expose.
	Paths []ExposePath `json:",omitempty"`
}

// ExposePath is one path a proxy exposes.
type ExposePath struct {
	// ListenerPort is the proxy port the path is exposed on.
	ListenerPort int `json:",omitempty"`
	// Path is the HTTP path, such as "/metrics".
	Path string `json:",omitempty"`
	// LocalPathPort is the port the service serves the path on.
	LocalPathPort int `json:",omitempty"`
	// Protocol is "http" (the default) or "http2".
	Protocol string `json:",omitempty"`
	// ParsedFromCheck is set on paths derived from a check.
	ParsedFromCheck bool
}

func (c ExposeConfig) validate(path string) error {
	for i, p := range c.Paths {
		pp := index(field(path, "Paths"), i)
		if p.Path != "" && !strings.HasPrefix(p.Path, "/") {
			return errf(field(pp, "Path"), "path %q must start with '/'", short(p.Path))
		}
		switch p.Protocol {
		case "", "http", "http2":
		default:
			return errf(field(pp, "Protocol"), "invalid protocol %q; use \"http\" or \"http2\"", short(p.Protocol))
		}
		if err := validatePort(field(pp, "ListenerPort"), p.ListenerPort); err != nil {
			return err
		}
		if err := validatePort(field(pp, "LocalPathPort"), p.LocalPathPort); err != nil {
			return err
		}
	}
	return nil
}

// EnvoyExtension configures an extension that patches Envoy resources. peerd
// stores extensions so that entries round-trip but does not run them.
type EnvoyExtension struct {
	Name          string
	Required      bool
	Arguments     map[string]any
	ConsulVersion string
	EnvoyVersion  string
}

func validateEnvoyExtensions(path string, exts []EnvoyExtension) error {
	for i, e := range exts {
		if e.Name == "" {
			return errf(field(index(path, i), "Name"), "extension name is required")
		}
	}
	return nil
}

// LogSinkType is where access logs go.
type LogSinkType string

// Log sink types.
const (
	DefaultLogSinkType LogSinkType = ""
	FileLogSinkType    LogSinkType = "file"
	StdErrLogSinkType  LogSinkType = "stderr"
	StdOutLogSinkType  LogSinkType = "stdout"
)

// AccessLogsConfig configures the access logs of every proxy in a partition.
type AccessLogsConfig struct {
	// Enabled turns access logging on.
	Enabled bool `json:",omitempty"`
	// DisableListenerLogs turns off logs for connections no listener matched.
	DisableListenerLogs bool `json:",omitempty"`
	// Type is "file", "stderr" or "stdout" (the default).
	Type LogSinkType `json:",omitempty"`
	// Path is the log file for Type "file".
	Path string `json:",omitempty"`
	// JSONFormat and TextFormat are the log format; at most one may be set.
	JSONFormat string `json:",omitempty"`
	TextFormat string `json:",omitempty"`
}

func (c *AccessLogsConfig) validate(path string) error {
	if c == nil {
		return nil
	}
	switch c.Type {
	case DefaultLogSinkType, FileLogSinkType, StdErrLogSinkType, StdOutLogSinkType:
	default:
		return errf(field(path, "Type"), "invalid access log type %q; use \"file\", \"stderr\" or \"stdout\"", short(string(c.Type)))
	}
	if c.JSONFormat != "" && c.TextFormat != "" {
		return errf(path, "cannot specify both JSONFormat and TextFormat; keep one")
	}
	if c.Type != FileLogSinkType && c.Path != "" {
		return errf(field(path, "Path"), "path is only valid for file type access logs; set Type to \"file\" or remove Path")
	}
	if c.Type == FileLogSinkType && c.Path == "" {
		return errf(field(path, "Path"), "path must be specified when using file type access logs")
	}
	if c.JSONFormat != "" {
		var m map[string]any
		if err := json.Unmarshal([]byte(c.JSONFormat), &m); err != nil {
			return errf(field(path, "JSONFormat"), "invalid access log JSON format: must be a JSON object: %v", err)
		}
	}
	return nil
}

// UpstreamConfiguration holds per-upstream settings of a service.
type UpstreamConfiguration struct {
	// Overrides configure named upstreams; each needs a Name.
	Overrides []*UpstreamConfig `json:",omitempty"`
	// Defaults configures every upstream; its Name must be empty.
	Defaults *UpstreamConfig `json:",omitempty"`
}

// UpstreamConfig configures the connection to one upstream, or to all.
type UpstreamConfig struct {
	// Name, Partition, Namespace and Peer are only accepted in Overrides.
	Name      string `json:",omitempty"`
	Partition string `json:",omitempty"`
	Namespace string `json:",omitempty"`
	Peer      string `json:",omitempty"`

	// EnvoyListenerJSON and EnvoyClusterJSON are Envoy escape hatches.
	// peerd stores them but does not apply them.
	EnvoyListenerJSON string `json:",omitempty"`
	EnvoyClusterJSON  string `json:",omitempty"`

	// Protocol is the upstream's protocol; Normalize lowercases it.
	Protocol string `json:",omitempty"`
	// ConnectTimeoutMs is the connect timeout in milliseconds; zero means
	// 5000. Normalize turns negative values into zero, as Consul does.
	ConnectTimeoutMs int `json:",omitempty"`

	Limits             *UpstreamLimits     `json:",omitempty"`
	PassiveHealthCheck *PassiveHealthCheck `json:",omitempty"`
	MeshGateway        MeshGatewayConfig   `json:",omitempty"`
	// BalanceOutboundConnections is "" or "exact_balance".
	BalanceOutboundConnections string `json:",omitempty"`
}

func (c *UpstreamConfig) normalize() {
	if c == nil {
		return
	}
	c.Protocol = strings.ToLower(c.Protocol)
	if c.ConnectTimeoutMs < 0 {
		c.ConnectTimeoutMs = 0
	}
}

func (c *UpstreamConfig) validate(path string, named bool) error {
	if c == nil {
		return errf(path, "must not be null")
	}
	if named {
		switch {
		case c.Name == "":
			return errf(field(path, "Name"), "name is required; overrides configure one named upstream each")
		case c.Name == WildcardSpecifier:
			return errf(field(path, "Name"), "wildcard name is not supported; use Defaults to configure every upstream")
		case c.Namespace == WildcardSpecifier:
			return errf(field(path, "Namespace"), "wildcard namespace is not supported")
		}
		if err := validateServiceName(field(path, "Name"), c.Name, false); err != nil {
			return err
		}
		if err := validateTenancy(field(path, "Partition"), c.Partition, false); err != nil {
			return err
		}
		if err := validateTenancy(field(path, "Namespace"), c.Namespace, false); err != nil {
			return err
		}
		if c.Peer != "" {
			if err := validatePeerName(field(path, "Peer"), c.Peer); err != nil {
				return err
			}
			if c.Partition != "" {
				return errf(path, "cannot set both Peer and Partition; a peered upstream lives in the peer's exported partition")
			}
		}
	} else {
		for _, f := range []struct{ name, val string }{
			{"Name", c.Name}, {"Namespace", c.Namespace}, {"Partition", c.Partition}, {"Peer", c.Peer},
		} {
			if f.val != "" {
				return errf(field(path, f.name), "must be empty in Defaults; move this upstream to Overrides")
			}
		}
	}
	if c.PassiveHealthCheck != nil {
		if err := c.PassiveHealthCheck.validate(field(path, "PassiveHealthCheck")); err != nil {
			return err
		}
	}
	if c.Limits != nil {
		if err := c.Limits.validate(field(path, "Limits")); err != nil {
			return err
		}
	}
	if err := c.MeshGateway.validate(field(path, "MeshGateway")); err != nil {
		return err
	}
	if !validConnectionBalance(c.BalanceOutboundConnections) {
		return errf(field(path, "BalanceOutboundConnections"), "invalid value %q; use \"exact_balance\" or leave it empty", short(c.BalanceOutboundConnections))
	}
	return nil
}

func validConnectionBalance(s string) bool { return s == "" || s == "exact_balance" }

// DestinationConfig describes a service outside the mesh that transparent
// proxies may reach.
type DestinationConfig struct {
	// Addresses are IPs or host names.
	Addresses []string `json:",omitempty"`
	// Port is the destination port.
	Port int `json:",omitempty"`
}

// PassiveHealthCheck configures outlier detection for an upstream.
type PassiveHealthCheck struct {
	// Interval between ejection sweeps. Written as nanoseconds, as Consul's
	// API writes it.
	Interval decode.DurationNanos `json:",omitempty"`
	// MaxFailures is the count of consecutive failures that ejects a host.
	MaxFailures uint32
	// EnforcingConsecutive5xx is the percent chance of ejecting on 5xx.
	EnforcingConsecutive5xx *uint32 `json:",omitempty"`
	// EnforcingConsecutiveGatewayFailure is the percent chance of ejecting on
	// gateway failures.
	EnforcingConsecutiveGatewayFailure *uint32 `json:",omitempty"`
	Consecutive5xx                     *uint32 `json:",omitempty"`
	ConsecutiveGatewayFailure          *uint32 `json:",omitempty"`
	// MaxEjectionPercent is the largest percentage of hosts ejected at once.
	MaxEjectionPercent *uint32 `json:",omitempty"`
	// BaseEjectionTime is the base ejection time, as nanoseconds.
	BaseEjectionTime *decode.DurationNanos `json:",omitempty"`
}

func (c *PassiveHealthCheck) validate(path string) error {
	if c.Interval < 0 {
		return errf(field(path, "Interval"), "passive health check interval cannot be negative")
	}
	for _, p := range []struct {
		name string
		v    *uint32
	}{
		{"EnforcingConsecutive5xx", c.EnforcingConsecutive5xx},
		{"EnforcingConsecutiveGatewayFailure", c.EnforcingConsecutiveGatewayFailure},
		{"MaxEjectionPercent", c.MaxEjectionPercent},
	} {
		if p.v != nil && *p.v > 100 {
			return errf(field(path, p.name), "must be a percentage between 0 and 100, got %d", *p.v)
		}
	}
	if c.BaseEjectionTime != nil && *c.BaseEjectionTime < 0 {
		return errf(field(path, "BaseEjectionTime"), "passive health check base ejection time cannot be negative")
	}
	return nil
}

// UpstreamLimits limits the connections and requests to an upstream.
type UpstreamLimits struct {
	MaxConnections        *int
	MaxPendingRequests    *int
	MaxConcurrentRequests *int
	// PassiveHealthCheck, when set on an API gateway's defaults, applies to
	// every routed service.
	PassiveHealthCheck *PassiveHealthCheck `json:",omitempty"`
}

func (c *UpstreamLimits) validate(path string) error {
	for _, l := range []struct {
		name string
		v    *int
	}{
		{"MaxConnections", c.MaxConnections},
		{"MaxPendingRequests", c.MaxPendingRequests},
		{"MaxConcurrentRequests", c.MaxConcurrentRequests},
	} {
		if l.v != nil && *l.v < 0 {
			return errf(field(path, l.name), "cannot be negative, got %d", *l.v)
		}
	}
	if c.PassiveHealthCheck != nil {
		return c.PassiveHealthCheck.validate(field(path, "PassiveHealthCheck"))
	}
	return nil
}

// RateLimits is inbound rate limiting, a Consul Enterprise feature peerd
// does not implement. It exists so that entries decode; Validate rejects it.
type RateLimits struct {
	InstanceLevel InstanceLevelRateLimits
}

// InstanceLevelRateLimits are rate limits applied per service instance.
type InstanceLevelRateLimits struct {
	RequestsPerSecond int
	RequestsMaxBurst  int
	Routes            []InstanceLevelRouteRateLimits
}

// InstanceLevelRouteRateLimits are rate limits for one route.
type InstanceLevelRouteRateLimits struct {
	PathExact         string
	PathPrefix        string
	PathRegex         string
	RequestsPerSecond int
	RequestsMaxBurst  int
}

// HTTPHeaderModifiers adds, sets and removes HTTP headers.
type HTTPHeaderModifiers struct {
	// Add appends values, keeping existing ones.
	Add map[string]string `json:",omitempty"`
	// Set replaces values.
	Set map[string]string `json:",omitempty"`
	// Remove deletes headers by name.
	Remove []string `json:",omitempty"`
}

func (m *HTTPHeaderModifiers) validate(path string) error {
	if m == nil {
		return nil
	}
	for _, part := range []struct {
		name string
		m    map[string]string
	}{{"Add", m.Add}, {"Set", m.Set}} {
		for _, k := range sortedKeys(part.m) {
			if !validHeaderName(k) {
				return errf(key(field(path, part.name), k), "invalid header name")
			}
		}
	}
	for i, h := range m.Remove {
		if !validHeaderName(h) {
			return errf(index(field(path, "Remove"), i), "invalid header name %q", short(h))
		}
	}
	return nil
}

// validHeaderName reports whether s is an HTTP header field name (RFC 9110
// token). Envoy accepts nothing else.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// ServiceResolverFailoverPolicy orders failover targets.
type ServiceResolverFailoverPolicy struct {
	// Mode is "sequential" (the default, also "") or "order-by-locality".
	Mode    string   `json:",omitempty"`
	Regions []string `json:",omitempty"`
}

func (p *ServiceResolverFailoverPolicy) validate(path string) error {
	if p == nil {
		return nil
	}
	switch p.Mode {
	case "", "sequential", "order-by-locality":
		return nil
	}
	return errf(field(path, "Mode"), "invalid failover policy mode %q; use \"sequential\" or \"order-by-locality\"", short(p.Mode))
}

// ServiceResolverPrioritizeByLocality controls locality-aware routing.
type ServiceResolverPrioritizeByLocality struct {
	// Mode is "none" (the default, also "") or "failover".
	Mode string `json:",omitempty"`
}

func (p *ServiceResolverPrioritizeByLocality) validate(path string) error {
	if p == nil {
		return nil
	}
	switch p.Mode {
	case "", "none", "failover":
		return nil
	}
	return errf(field(path, "Mode"), "invalid prioritize by locality mode %q; use \"none\" or \"failover\"", short(p.Mode))
}
