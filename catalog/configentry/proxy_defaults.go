package configentry

import "strings"

// ProxyConfigEntry (kind proxy-defaults) sets defaults for every proxy in a
// partition. Its name is always "global".
type ProxyConfigEntry struct {
	Kind string
	// Name must be "global"; Normalize sets it when empty.
	Name      string
	Partition string `json:",omitempty"`
	// Namespace must be empty or "default": the entry is partition-scoped.
	Namespace        string                  `json:",omitempty"`
	Mode             ProxyMode               `json:",omitempty"`
	TransparentProxy *TransparentProxyConfig `json:",omitempty"`
	MutualTLSMode    MutualTLSMode           `json:",omitempty"`
	// Config is opaque proxy configuration. Keys are kept as written; numbers
	// are json.Number. Its "protocol" key, if set, must be a valid protocol.
	Config               map[string]any                       `json:",omitempty"`
	MeshGateway          MeshGatewayConfig                    `json:",omitempty"`
	Expose               ExposeConfig                         `json:",omitempty"`
	AccessLogs           *AccessLogsConfig                    `json:",omitempty"`
	EnvoyExtensions      []EnvoyExtension                     `json:",omitempty"`
	FailoverPolicy       *ServiceResolverFailoverPolicy       `json:",omitempty"`
	PrioritizeByLocality *ServiceResolverPrioritizeByLocality `json:",omitempty"`

	Meta map[string]string `json:",omitempty"`
	RaftIndex
}

func (e *ProxyConfigEntry) GetKind() string            { return ProxyDefaults }
func (e *ProxyConfigEntry) GetName() string            { return e.Name }
func (e *ProxyConfigEntry) GetPartition() string       { return e.Partition }
func (e *ProxyConfigEntry) GetNamespace() string       { return e.Namespace }
func (e *ProxyConfigEntry) GetMeta() map[string]string { return e.Meta }
func (e *ProxyConfigEntry) GetRaftIndex() *RaftIndex   { return &e.RaftIndex }

// Normalize sets Kind and names the entry "global" when unnamed.
func (e *ProxyConfigEntry) Normalize() {
	e.Kind = ProxyDefaults
	if e.Name == "" {
		e.Name = ProxyConfigGlobal
	}
}

// Validate applies Consul's rules for proxy-defaults.
func (e *ProxyConfigEntry) Validate() error {
	if e.Name != ProxyConfigGlobal {
		return errf("Name", "invalid name %q, only %q is supported", short(e.Name), ProxyConfigGlobal)
	}
	if err := validateTenancy("Partition", e.Partition, false); err != nil {
		return err
	}
	if e.Namespace != "" && e.Namespace != "default" {
		return errf("Namespace", "proxy-defaults are partition-scoped; remove Namespace")
	}
	if err := e.AccessLogs.validate("AccessLogs"); err != nil {
		return err
	}
	if err := validateMeta("Meta", e.Meta); err != nil {
		return err
	}
	if p, ok := e.Config["protocol"]; ok {
		s, isString := p.(string)
		if !isString {
			return errf(`Config["protocol"]`, "protocol must be a string, one of %s", strings.Join(validProtocols, ", "))
		}
		if !validProtocol(strings.ToLower(s)) {
			return errf(`Config["protocol"]`, "invalid protocol %q; use one of %s", short(s), strings.Join(validProtocols, ", "))
		}
	}
	const maxSocketDirLen = 70 // Consul's limit, for the 104-byte socket path limit
	if dir, _ := e.Config["envoy_hcp_metrics_bind_socket_dir"].(string); len(dir) > maxSocketDirLen {
		return errf(`Config["envoy_hcp_metrics_bind_socket_dir"]`, "length %d exceeds max %d", len(dir), maxSocketDirLen)
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
	if err := validateEnvoyExtensions("EnvoyExtensions", e.EnvoyExtensions); err != nil {
		return err
	}
	if err := e.FailoverPolicy.validate("FailoverPolicy"); err != nil {
		return err
	}
	return e.PrioritizeByLocality.validate("PrioritizeByLocality")
}
