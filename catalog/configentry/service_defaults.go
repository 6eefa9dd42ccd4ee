package configentry

import (
	"net"
	"strings"
)

// ServiceConfigEntry (kind service-defaults) sets defaults for every
// instance of a service: its protocol, proxy mode, upstream settings and more.
type ServiceConfigEntry struct {
	Kind      string
	Name      string
	Partition string `json:",omitempty"`
	Namespace string `json:",omitempty"`
	// Protocol is "tcp" (the default, also ""), "http", "http2" or "grpc".
	// Normalize lowercases it.
	Protocol         string                  `json:",omitempty"`
	Mode             ProxyMode               `json:",omitempty"`
	TransparentProxy *TransparentProxyConfig `json:",omitempty"`
	MutualTLSMode    MutualTLSMode           `json:",omitempty"`
	MeshGateway      MeshGatewayConfig       `json:",omitempty"`
	Expose           ExposeConfig            `json:",omitempty"`
	// ExternalSNI is the SNI to use when dialing this service outside the mesh.
	ExternalSNI    string                 `json:",omitempty"`
	UpstreamConfig *UpstreamConfiguration `json:",omitempty"`
	// Destination makes the service a virtual service outside the mesh; it
	// excludes UpstreamConfig.
	Destination               *DestinationConfig `json:",omitempty"`
	MaxInboundConnections     int                `json:",omitempty"`
	LocalConnectTimeoutMs     int                `json:",omitempty"`
	LocalRequestTimeoutMs     int                `json:",omitempty"`
	BalanceInboundConnections string             `json:",omitempty"`
	// RateLimits is a Consul Enterprise feature; Validate rejects it.
	RateLimits      *RateLimits       `json:",omitempty"`
	EnvoyExtensions []EnvoyExtension  `json:",omitempty"`
	Meta            map[string]string `json:",omitempty"`
	RaftIndex
	MaxRequestHeadersKB *uint32 `json:",omitempty"`
}

func (e *ServiceConfigEntry) GetKind() string            { return ServiceDefaults }
func (e *ServiceConfigEntry) GetName() string            { return e.Name }
func (e *ServiceConfigEntry) GetPartition() string       { return e.Partition }
func (e *ServiceConfigEntry) GetNamespace() string       { return e.Namespace }
func (e *ServiceConfigEntry) GetMeta() map[string]string { return e.Meta }
func (e *ServiceConfigEntry) GetRaftIndex() *RaftIndex   { return &e.RaftIndex }

// Normalize sets Kind, lowercases Protocol and normalizes upstream settings
// (lowercase protocols, negative connect timeouts become zero), as Consul
// does.
func (e *ServiceConfigEntry) Normalize() {
	e.Kind = ServiceDefaults
	e.Protocol = strings.ToLower(e.Protocol)
	if e.UpstreamConfig != nil {
		for _, o := range e.UpstreamConfig.Overrides {
			o.normalize()
		}
		e.UpstreamConfig.Defaults.normalize()
	}
}

// Validate applies Consul's rules for service-defaults.
func (e *ServiceConfigEntry) Validate() error {
	if e.Name == "" {
		return errf("Name", "name is required")
	}
	if e.Name == WildcardSpecifier {
		return errf("Name", "service-defaults name must be the name of a service, and not a wildcard")
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
	if e.Protocol != "" && !validProtocol(e.Protocol) {
		return errf("Protocol", "invalid protocol %q; use one of %s", short(e.Protocol), strings.Join(validProtocols, ", "))
	}
	if err := validateProxyMode("Mode", e.Mode); err != nil {
		return err
	}
	if err := e.TransparentProxy.validate("TransparentProxy"); err != nil {
		return err
	}
	if err := validateMutualTLSMode("MutualTLSMode", e.MutualTLSMode); err != nil {
		return err
	}
	if err := e.MeshGateway.validate("MeshGateway"); err != nil {
		return err
	}
	if err := e.Expose.validate("Expose"); err != nil {
		return err
	}
	if !validConnectionBalance(e.BalanceInboundConnections) {
		return errf("BalanceInboundConnections", "invalid value %q; use \"exact_balance\" or leave it empty", short(e.BalanceInboundConnections))
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"MaxInboundConnections", e.MaxInboundConnections},
		{"LocalConnectTimeoutMs", e.LocalConnectTimeoutMs},
		{"LocalRequestTimeoutMs", e.LocalRequestTimeoutMs},
	} {
		if f.v < 0 {
			return errf(f.name, "cannot be negative, got %d", f.v)
		}
	}
	if e.UpstreamConfig != nil && e.Destination != nil {
		return errf("Destination", "UpstreamConfig and Destination are mutually exclusive for service defaults; remove one")
	}
	if u := e.UpstreamConfig; u != nil {
		for i, o := range u.Overrides {
			if err := o.validate(index("UpstreamConfig.Overrides", i), true); err != nil {
				return err
			}
		}
		if u.Defaults != nil {
			if err := u.Defaults.validate("UpstreamConfig.Defaults", false); err != nil {
				return err
			}
		}
	}
	if d := e.Destination; d != nil {
		if len(d.Addresses) == 0 {
			return errf("Destination.Addresses", "destination must contain at least one valid address")
		}
		seen := make(map[string]bool, len(d.Addresses))
		for i, a := range d.Addresses {
			path := index("Destination.Addresses", i)
			if seen[a] {
				return errf(path, "duplicate address %q is not allowed", short(a))
			}
			seen[a] = true
			if !validEndpointAddress(a) {
				return errf(path, "could not validate address %q as an IP or host name", short(a))
			}
		}
		if d.Port < 1 || d.Port > 65535 {
			return errf("Destination.Port", "invalid port number %d; use 1 to 65535", d.Port)
		}
	}
	if e.RateLimits != nil {
		return errf("RateLimits", "rate limiting is a Consul Enterprise feature peerd does not support; remove RateLimits")
	}
	return validateEnvoyExtensions("EnvoyExtensions", e.EnvoyExtensions)
}

// validEndpointAddress reports whether a is an IP address or a host name
// without wildcards, as Consul requires of destination addresses.
func validEndpointAddress(a string) bool {
	if net.ParseIP(a) != nil {
		return true
	}
	if a == "" || len(a) > 253 || strings.Contains(a, "*") {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(a, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
