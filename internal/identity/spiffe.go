package identity

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TrustDomainSuffix ends every peerd trust domain: "<cluster-id>.peerd".
const TrustDomainSuffix = ".peerd"

// DefaultPartition and DefaultNamespace stand in for empty names in the
// peered SNI, as they do in Consul.
const (
	DefaultPartition = "default"
	DefaultNamespace = "default"
)

// TrustDomain returns the trust domain of the cluster whose ID is clusterID:
// "<cluster-id>.peerd". clusterID must be a UUID in its canonical
// 8-4-4-4-12 hexadecimal form; it is lowercased.
func TrustDomain(clusterID string) (spiffeid.TrustDomain, error) {
	if !isUUID(clusterID) {
		return spiffeid.TrustDomain{}, fmt.Errorf("cluster ID %q is not a UUID: %w", clusterID, ErrInvalidName)
	}
	td, err := spiffeid.TrustDomainFromString(strings.ToLower(clusterID) + TrustDomainSuffix)
	if err != nil {
		// Unreachable: a lowercased UUID plus the suffix is a valid name.
		return spiffeid.TrustDomain{}, fmt.Errorf("trust domain of cluster %q: %v: %w", clusterID, err, ErrInvalidName)
	}
	return td, nil
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// ServiceIdentity is a service's SPIFFE ID taken apart.
type ServiceIdentity struct {
	TrustDomain spiffeid.TrustDomain
	// Partition is the admin partition named by an "/ap/<partition>"
	// segment, or "" when the ID has none. Consul writes that segment only
	// for non-default partitions, so "" means Consul's default partition.
	Partition  string
	Namespace  string
	Datacenter string
	Service    string
}

// ID formats s as spiffe://<td>[/ap/<partition>]/ns/<ns>/dc/<dc>/svc/<svc>,
// with the /ap/ segment present exactly when Partition is not empty. Every
// name must be a valid SPIFFE path segment: letters, digits, '.', '-' and
// '_', and not "." or "..".
func (s ServiceIdentity) ID() (spiffeid.ID, error) {
	if s.TrustDomain.IsZero() {
		return spiffeid.ID{}, fmt.Errorf("service ID: empty trust domain: %w", ErrInvalidName)
	}
	type field struct{ kind, value string }
	fields := []field{{"namespace", s.Namespace}, {"datacenter", s.Datacenter}, {"service", s.Service}}
	var segs []string
	if s.Partition != "" {
		fields = append([]field{{"partition", s.Partition}}, fields...)
		segs = append(segs, "ap", s.Partition)
	}
	for _, f := range fields {
		if err := spiffeid.ValidatePathSegment(f.value); err != nil {
			return spiffeid.ID{}, fmt.Errorf("service ID: %s %q: %v: %w", f.kind, f.value, err, ErrInvalidName)
		}
	}
	segs = append(segs, "ns", s.Namespace, "dc", s.Datacenter, "svc", s.Service)
	id, err := spiffeid.FromSegments(s.TrustDomain, segs...)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("service ID: %v: %w", err, ErrInvalidName)
	}
	return id, nil
}

// ServiceID returns the SPIFFE ID of a service in the default partition:
// spiffe://<td>/ns/<namespace>/dc/<datacenter>/svc/<service>. See
// ServiceIdentity.ID for the rules on names; none may be empty.
func ServiceID(td spiffeid.TrustDomain, namespace, datacenter, service string) (spiffeid.ID, error) {
	return ServiceIdentity{TrustDomain: td, Namespace: namespace, Datacenter: datacenter, Service: service}.ID()
}

// ParseServiceID takes a service's SPIFFE ID apart. It accepts exactly the
// paths /ns/<ns>/dc/<dc>/svc/<svc> and /ap/<partition>/ns/<ns>/dc/<dc>/svc/<svc>
// and returns an error wrapping ErrNotServiceID for anything else. For every
// ID it accepts, the result's ID method returns that ID again.
//
// It does not check the trust domain; compare the result's TrustDomain with
// the one expected.
func ParseServiceID(id spiffeid.ID) (ServiceIdentity, error) {
	if id.IsZero() {
		return ServiceIdentity{}, fmt.Errorf("empty SPIFFE ID: %w", ErrNotServiceID)
	}
	segs := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	var s ServiceIdentity
	switch {
	case len(segs) == 8 && segs[0] == "ap":
		s.Partition = segs[1]
		segs = segs[2:]
	case len(segs) == 6:
	default:
		return ServiceIdentity{}, fmt.Errorf("%q: %w", id, ErrNotServiceID)
	}
	if segs[0] != "ns" || segs[2] != "dc" || segs[4] != "svc" {
		return ServiceIdentity{}, fmt.Errorf("%q: %w", id, ErrNotServiceID)
	}
	s.TrustDomain = id.TrustDomain()
	s.Namespace, s.Datacenter, s.Service = segs[1], segs[3], segs[5]
	// The segments are valid: spiffeid.ID only holds valid paths.
	return s, nil
}

// GatewayID returns the SPIFFE ID of the mesh gateway role in datacenter:
// spiffe://<td>/gateway/mesh/dc/<datacenter>.
func GatewayID(td spiffeid.TrustDomain, datacenter string) (spiffeid.ID, error) {
	if td.IsZero() {
		return spiffeid.ID{}, fmt.Errorf("gateway ID: empty trust domain: %w", ErrInvalidName)
	}
	if err := spiffeid.ValidatePathSegment(datacenter); err != nil {
		return spiffeid.ID{}, fmt.Errorf("gateway ID: datacenter %q: %v: %w", datacenter, err, ErrInvalidName)
	}
	id, err := spiffeid.FromSegments(td, "gateway", "mesh", "dc", datacenter)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("gateway ID: %v: %w", err, ErrInvalidName)
	}
	return id, nil
}

// ParseGatewayID returns the datacenter of a mesh gateway's SPIFFE ID,
// spiffe://<td>/gateway/mesh/dc/<datacenter>, and an error wrapping
// ErrNotGatewayID for any other ID. Like ParseServiceID it does not check
// the trust domain.
func ParseGatewayID(id spiffeid.ID) (string, error) {
	segs := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if id.IsZero() || len(segs) != 4 || segs[0] != "gateway" || segs[1] != "mesh" || segs[2] != "dc" {
		return "", fmt.Errorf("%q: %w", id, ErrNotGatewayID)
	}
	return segs[3], nil
}

// ServerName returns "server.<datacenter>.peering.<td>": the DNS SAN of the
// peering server certificate and the TLS server name that a dialing peer
// verifies (Consul's PeeringServerSAN).
//
// Like PeeredSNI it only formats; datacenter is expected to have been
// validated where it was configured. ValidateDNSName checks the result.
func ServerName(datacenter string, td spiffeid.TrustDomain) string {
	return "server." + datacenter + ".peering." + td.Name()
}

// PeeredSNI returns "<service>.<namespace>.<partition>.<peer>.external.<td>",
// the TLS server name under which a peer's gateway routes connections to an
// exported service (Consul's PeeredServiceSNI). An empty namespace or
// partition stands for "default".
//
// As in Consul, the exporting cluster computes it, with its own trust domain
// and its own name for the consuming peer, and ships it to the importer,
// which dials with it verbatim. It only formats; ValidateDNSName checks the
// result.
func PeeredSNI(service, namespace, partition, peer string, td spiffeid.TrustDomain) string {
	if namespace == "" {
		namespace = DefaultNamespace
	}
	if partition == "" {
		partition = DefaultPartition
	}
	return service + "." + namespace + "." + partition + "." + peer + ".external." + td.Name()
}

// ValidateDNSName checks that name can be a DNS SAN and a TLS server name:
// at most 253 characters of dot-separated labels, each 1 to 63 letters,
// digits, '-' or '_' (the latter tolerated as crypto/x509 does), not
// beginning or ending with '-'. Wildcards and a trailing dot are rejected.
func ValidateDNSName(name string) error {
	if name == "" {
		return fmt.Errorf("empty DNS name: %w", ErrInvalidName)
	}
	if len(name) > 253 {
		return fmt.Errorf("DNS name %q is longer than 253 characters: %w", name, ErrInvalidName)
	}
	for _, label := range strings.Split(name, ".") {
		if err := validateLabel(label); err != nil {
			return fmt.Errorf("DNS name %q: %v: %w", name, err, ErrInvalidName)
		}
	}
	return nil
}

func validateLabel(label string) error {
	switch {
	case label == "":
		return fmt.Errorf("empty label")
	case len(label) > 63:
		return fmt.Errorf("label %q is longer than 63 characters", label)
	case label[0] == '-' || label[len(label)-1] == '-':
		return fmt.Errorf("label %q begins or ends with '-'", label)
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("label %q has invalid character %q", label, c)
		}
	}
	return nil
}

// InternalSNI is the TLS server name for a service of this cluster reached
// through another node's gateway: "<service>.<namespace>.<dc>.internal.<td>",
// Consul's local form.
func InternalSNI(service, namespace, datacenter string, td spiffeid.TrustDomain) string {
	return service + "." + namespace + "." + datacenter + ".internal." + td.Name()
}

// APIServerName returns "api.<td>", the DNS SAN every node's HTTPS API
// certificate from the cluster CA carries: the TLS server name a client
// of any node of the cluster verifies (peerctl -tls-server-name,
// CONSUL_TLS_SERVER_NAME).
func APIServerName(td spiffeid.TrustDomain) string {
	return "api." + td.Name()
}

// NodeAPIServerName returns "<node>.node.api.<td>", the DNS SAN that names
// one node's HTTPS API, for a client that must reach that node and no
// other.
func NodeAPIServerName(node string, td spiffeid.TrustDomain) string {
	return node + ".node.api." + td.Name()
}

// APINames are the DNS SANs of a's HTTPS API certificate: APIServerName,
// and NodeAPIServerName when the node's name makes a valid DNS name.
func APINames(a Agent) []string {
	names := []string{APIServerName(a.TrustDomain)}
	if n := NodeAPIServerName(strings.ToLower(a.Node), a.TrustDomain); ValidateDNSName(n) == nil {
		names = append(names, n)
	}
	return names
}
