package configentry

// ExportedServicesConfigEntry lists the services of a partition that are
// exported, and to which peers, partitions or sameness groups.
type ExportedServicesConfigEntry struct {
	Kind string
	// Name is the partition the entry applies to; it must be "default".
	// Normalize sets it when empty.
	Name      string
	Partition string `json:",omitempty"`
	// Namespace is accepted for symmetry with other kinds and cleared by
	// Normalize: the entry is partition-scoped, as in Consul.
	Namespace string `json:",omitempty"`

	// Services are the exported services.
	Services []ExportedService `json:",omitempty"`

	Meta map[string]string `json:",omitempty"`
	RaftIndex
}

// ExportedService exports one service (or all, with Name "*").
type ExportedService struct {
	// Name is the service, or "*" for every service in Namespace.
	Name string
	// Namespace is the service's namespace; "*" means every namespace and
	// then requires Name "*".
	Namespace string `json:",omitempty"`
	// Consumers receive the service.
	Consumers []ServiceConsumer `json:",omitempty"`
}

// ServiceConsumer is one receiver of an exported service. Exactly one field
// is set.
type ServiceConsumer struct {
	// Partition is a local admin partition.
	Partition string `json:",omitempty"`
	// Peer is a cluster peer. "peer_name", its old spelling, is accepted.
	Peer string `json:",omitempty" alias:"peer_name"`
	// SamenessGroup is a sameness group.
	SamenessGroup string `json:",omitempty"`
}

func (e *ExportedServicesConfigEntry) GetKind() string            { return ExportedServices }
func (e *ExportedServicesConfigEntry) GetName() string            { return e.Name }
func (e *ExportedServicesConfigEntry) GetPartition() string       { return e.Partition }
func (e *ExportedServicesConfigEntry) GetNamespace() string       { return e.Namespace }
func (e *ExportedServicesConfigEntry) GetMeta() map[string]string { return e.Meta }
func (e *ExportedServicesConfigEntry) GetRaftIndex() *RaftIndex   { return &e.RaftIndex }

// Normalize sets Kind, names the entry "default" when unnamed and clears
// Namespace.
func (e *ExportedServicesConfigEntry) Normalize() {
	e.Kind = ExportedServices
	if e.Name == "" {
		e.Name = DefaultPartition
	}
	e.Namespace = ""
}

// Validate applies Consul's rules for exported-services.
func (e *ExportedServicesConfigEntry) Validate() error {
	if e.Name != DefaultPartition {
		return errf("Name", "exported-services Name must be %q (the partition); got %q", DefaultPartition, short(e.Name))
	}
	if e.Partition != "" && e.Partition != e.Name {
		return errf("Partition", "must be empty or equal to Name (%q); an exported-services entry is named after its partition", e.Name)
	}
	if e.Namespace != "" {
		return errf("Namespace", "exported-services entries are partition-scoped; remove Namespace")
	}
	if err := validateMeta("Meta", e.Meta); err != nil {
		return err
	}
	type svcKey struct{ ns, name string }
	seen := make(map[svcKey]int, len(e.Services))
	for i, svc := range e.Services {
		path := index("Services", i)
		if svc.Name == "" {
			return errf(field(path, "Name"), "service name cannot be empty; use a service name or \"*\" for all services")
		}
		if err := validateServiceName(field(path, "Name"), svc.Name, true); err != nil {
			return err
		}
		if err := validateTenancy(field(path, "Namespace"), svc.Namespace, true); err != nil {
			return err
		}
		if svc.Namespace == WildcardSpecifier && svc.Name != WildcardSpecifier {
			return errf(path, "service name must be wildcard if namespace is wildcard; set Name to \"*\" or name a namespace")
		}
		k := svcKey{svc.Namespace, svc.Name}
		if j, dup := seen[k]; dup {
			return errf(path, "service %q is already exported by Services[%d]; merge their Consumers into one entry", short(svc.Name), j)
		}
		seen[k] = i
		if len(svc.Consumers) == 0 {
			return errf(field(path, "Consumers"), "must have at least one consumer; add a Peer, Partition or SamenessGroup to export to")
		}
		for j, c := range svc.Consumers {
			if err := c.validate(index(field(path, "Consumers"), j)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c ServiceConsumer) validate(path string) error {
	count := 0
	for _, v := range []string{c.Peer, c.Partition, c.SamenessGroup} {
		if v != "" {
			count++
		}
	}
	switch {
	case count > 1:
		return errf(path, "at most one of Peer, Partition or SamenessGroup may be set; split this consumer into one consumer per field")
	case count == 0:
		return errf(path, "one of Peer, Partition or SamenessGroup must be set")
	case c.Partition == WildcardSpecifier:
		return errf(field(path, "Partition"), "exporting to all partitions (wildcard) is not supported; name each partition")
	case c.Peer == WildcardSpecifier:
		return errf(field(path, "Peer"), "exporting to all peers (wildcard) is not supported; name each peer")
	}
	if c.Peer != "" {
		return validatePeerName(field(path, "Peer"), c.Peer)
	}
	if c.Partition != "" {
		return validateTenancy(field(path, "Partition"), c.Partition, false)
	}
	return validateSamenessGroup(field(path, "SamenessGroup"), c.SamenessGroup)
}
