package configentry

import "fmt"

// MeshConfigEntry (kind mesh) holds mesh-wide settings for a partition. Its
// name is always "mesh".
type MeshConfigEntry struct {
	Kind string
	// Name must be "mesh"; Normalize sets it when empty. Consul's API type
	// has no Name field and ignores it.
	Name      string
	Partition string `json:",omitempty"`
	// Namespace must be empty or "default": the entry is partition-scoped.
	Namespace string `json:",omitempty"`

	TransparentProxy TransparentProxyMeshConfig
	// AllowEnablingPermissiveMutualTLS must be true before any service or
	// proxy defaults may set MutualTLSMode "permissive".
	AllowEnablingPermissiveMutualTLS bool `json:",omitempty"`
	ValidateClusters                 bool `json:",omitempty"`

	TLS     *MeshTLSConfig     `json:",omitempty"`
	HTTP    *MeshHTTPConfig    `json:",omitempty"`
	Peering *PeeringMeshConfig `json:",omitempty"`

	Meta map[string]string `json:",omitempty"`
	RaftIndex
}

// TransparentProxyMeshConfig holds mesh-wide transparent proxy settings.
type TransparentProxyMeshConfig struct {
	// MeshDestinationsOnly stops transparent proxies from reaching
	// destinations outside the mesh.
	MeshDestinationsOnly bool
}

// MeshTLSConfig sets TLS parameters for incoming and outgoing mesh traffic.
type MeshTLSConfig struct {
	Incoming *MeshDirectionalTLSConfig `json:",omitempty"`
	Outgoing *MeshDirectionalTLSConfig `json:",omitempty"`
}

// MeshDirectionalTLSConfig sets TLS versions and cipher suites.
type MeshDirectionalTLSConfig struct {
	// TLSMinVersion and TLSMaxVersion are "TLS_AUTO", "TLSv1_0", "TLSv1_1",
	// "TLSv1_2" or "TLSv1_3".
	TLSMinVersion string `json:",omitempty"`
	TLSMaxVersion string `json:",omitempty"`
	// CipherSuites apply to TLS 1.2 and earlier only.
	CipherSuites []string `json:",omitempty"`
}

// MeshHTTPConfig holds mesh-wide HTTP settings.
type MeshHTTPConfig struct {
	SanitizeXForwardedClientCert bool
	Incoming                     *MeshDirectionalHTTPConfig `json:",omitempty"`
}

// MeshDirectionalHTTPConfig holds HTTP settings for one traffic direction.
type MeshDirectionalHTTPConfig struct {
	RequestNormalization *RequestNormalizationMeshConfig `json:",omitempty"`
}

// RequestNormalizationMeshConfig controls how proxies normalize request paths
// and headers before matching intentions and routes.
type RequestNormalizationMeshConfig struct {
	InsecureDisablePathNormalization bool `json:",omitempty"`
	MergeSlashes                     bool `json:",omitempty"`
	// PathWithEscapedSlashesAction is one of IMPLEMENTATION_SPECIFIC_DEFAULT,
	// KEEP_UNCHANGED, REJECT_REQUEST, UNESCAPE_AND_REDIRECT and
	// UNESCAPE_AND_FORWARD.
	PathWithEscapedSlashesAction string `json:",omitempty"`
	// HeadersWithUnderscoresAction is one of ALLOW, REJECT_REQUEST and
	// DROP_HEADER.
	HeadersWithUnderscoresAction string `json:",omitempty"`
}

// PeeringMeshConfig holds mesh-wide peering settings.
type PeeringMeshConfig struct {
	// PeerThroughMeshGateways sends peering control-plane traffic through
	// mesh gateways.
	PeerThroughMeshGateways bool `json:",omitempty"`
}

func (e *MeshConfigEntry) GetKind() string            { return MeshConfig }
func (e *MeshConfigEntry) GetName() string            { return e.Name }
func (e *MeshConfigEntry) GetPartition() string       { return e.Partition }
func (e *MeshConfigEntry) GetNamespace() string       { return e.Namespace }
func (e *MeshConfigEntry) GetMeta() map[string]string { return e.Meta }
func (e *MeshConfigEntry) GetRaftIndex() *RaftIndex   { return &e.RaftIndex }

// Normalize sets Kind and names the entry "mesh" when unnamed.
func (e *MeshConfigEntry) Normalize() {
	e.Kind = MeshConfig
	if e.Name == "" {
		e.Name = MeshConfigMesh
	}
}

// PeerThroughMeshGateways reports whether peering traffic must go through
// mesh gateways. e may be nil.
func (e *MeshConfigEntry) PeerThroughMeshGateways() bool {
	return e != nil && e.Peering != nil && e.Peering.PeerThroughMeshGateways
}

// Validate applies Consul's rules for mesh.
func (e *MeshConfigEntry) Validate() error {
	if e.Name != MeshConfigMesh {
		return errf("Name", "invalid name %q, only %q is supported", short(e.Name), MeshConfigMesh)
	}
	if err := validateTenancy("Partition", e.Partition, false); err != nil {
		return err
	}
	if e.Namespace != "" && e.Namespace != "default" {
		return errf("Namespace", "mesh entries are partition-scoped; remove Namespace")
	}
	if err := validateMeta("Meta", e.Meta); err != nil {
		return err
	}
	if e.TLS != nil {
		if err := e.TLS.Incoming.validate("TLS.Incoming"); err != nil {
			return err
		}
		if err := e.TLS.Outgoing.validate("TLS.Outgoing"); err != nil {
			return err
		}
	}
	if e.HTTP != nil && e.HTTP.Incoming != nil && e.HTTP.Incoming.RequestNormalization != nil {
		rn := e.HTTP.Incoming.RequestNormalization
		const path = "HTTP.Incoming.RequestNormalization"
		switch rn.PathWithEscapedSlashesAction {
		case "", "IMPLEMENTATION_SPECIFIC_DEFAULT", "KEEP_UNCHANGED", "REJECT_REQUEST", "UNESCAPE_AND_REDIRECT", "UNESCAPE_AND_FORWARD":
		default:
			return errf(path+".PathWithEscapedSlashesAction", "no matching PathWithEscapedSlashesAction value found for %q, please specify one of [IMPLEMENTATION_SPECIFIC_DEFAULT, KEEP_UNCHANGED, REJECT_REQUEST, UNESCAPE_AND_REDIRECT, UNESCAPE_AND_FORWARD]", short(rn.PathWithEscapedSlashesAction))
		}
		switch rn.HeadersWithUnderscoresAction {
		case "", "ALLOW", "REJECT_REQUEST", "DROP_HEADER":
		default:
			return errf(path+".HeadersWithUnderscoresAction", "no matching HeadersWithUnderscoresAction value found for %q, please specify one of [ALLOW, REJECT_REQUEST, DROP_HEADER]", short(rn.HeadersWithUnderscoresAction))
		}
	}
	return nil
}

// tlsVersions orders the TLS versions Consul accepts; TLS_AUTO is unordered.
var tlsVersions = map[string]int{"TLS_AUTO": 0, "TLSv1_0": 10, "TLSv1_1": 11, "TLSv1_2": 12, "TLSv1_3": 13}

func (c *MeshDirectionalTLSConfig) validate(path string) error {
	if c == nil {
		return nil
	}
	for _, v := range []struct{ name, val string }{{"TLSMinVersion", c.TLSMinVersion}, {"TLSMaxVersion", c.TLSMaxVersion}} {
		if _, ok := tlsVersions[v.val]; v.val != "" && !ok {
			return errf(field(path, v.name), "%q is not a valid TLS version; use TLS_AUTO, TLSv1_0, TLSv1_1, TLSv1_2 or TLSv1_3", short(v.val))
		}
	}
	minV, maxV := tlsVersions[c.TLSMinVersion], tlsVersions[c.TLSMaxVersion]
	if minV != 0 && maxV != 0 && maxV < minV {
		return errf(path, "configuring max version %s less than the configured min version %s is invalid", c.TLSMaxVersion, c.TLSMinVersion)
	}
	if len(c.CipherSuites) > 0 && minV == tlsVersions["TLSv1_3"] {
		return errf(field(path, "CipherSuites"), "%s", fmt.Sprintf("configuring CipherSuites is only applicable to connections negotiated with TLS 1.2 or earlier, TLSMinVersion is set to %s", c.TLSMinVersion))
	}
	return nil
}
