package state

import (
	"github.com/peerd/peerd/internal/decode"
)

// Health statuses, as Consul spells them.
const (
	HealthPassing  = "passing"
	HealthWarning  = "warning"
	HealthCritical = "critical"
	// HealthMaint is the status of a node or service in maintenance mode.
	HealthMaint = "maintenance"
	// HealthAny matches every status in health filters.
	HealthAny = "any"
)

// The check every node has: its membership health as seen by the LAN gossip pool.
const (
	SerfCheckID   = "serfHealth"
	SerfCheckName = "Serf Health Status"
)

// ValidHealthStatus reports whether s is a status a check may hold.
func ValidHealthStatus(s string) bool {
	switch s {
	case HealthPassing, HealthWarning, HealthCritical, HealthMaint:
		return true
	}
	return false
}

// RaftIndex records the raft indexes at which a row was created and last modified.
type RaftIndex struct {
	CreateIndex uint64
	ModifyIndex uint64
}

// Node is a member of the cluster as recorded in the catalog.
type Node struct {
	// ID is the node's stable UUID.
	ID string
	// Node is the node's unique name.
	Node string
	// Address is the address other nodes reach the node at.
	Address    string
	Datacenter string
	// TaggedAddresses holds extra addresses (e.g. "lan", "wan").
	TaggedAddresses map[string]string
	Meta            map[string]string
	// PeerName is set on nodes imported from a peer; "" for local ones.
	PeerName string `json:",omitempty"`
	RaftIndex
}

// ServiceAddress is an address and port, used for a service's tagged addresses.
type ServiceAddress struct {
	Address string
	Port    int
}

// Weights are the DNS SRV weights of a service instance by health.
type Weights struct {
	Passing int
	Warning int
}

// Upstream is a service a mesh-enabled service calls, bound to a local port.
// Stored now; the L7 terminator acts on it.
type Upstream struct {
	DestinationType      string         `json:",omitempty"`
	DestinationNamespace string         `json:",omitempty"`
	DestinationPartition string         `json:",omitempty"`
	DestinationPeer      string         `json:",omitempty"`
	DestinationName      string         `json:",omitempty"`
	Datacenter           string         `json:",omitempty"`
	LocalBindAddress     string         `json:",omitempty"`
	LocalBindPort        int            `json:",omitempty"`
	LocalBindSocketPath  string         `json:",omitempty"`
	LocalBindSocketMode  string         `json:",omitempty"`
	Config               map[string]any `json:",omitempty"`
	MeshGateway          *MeshGateway   `json:",omitempty"`
	CentrallyConfigured  bool           `json:",omitempty"`
}

// MeshGateway selects how traffic to an upstream uses mesh gateways.
type MeshGateway struct {
	Mode string `json:",omitempty"`
}

// TransparentProxy configures transparent capture of a service's outbound traffic.
type TransparentProxy struct {
	OutboundListenerPort int  `json:",omitempty"`
	DialedDirectly       bool `json:",omitempty"`
}

// ExposePath exposes one HTTP path of a service through its proxy.
type ExposePath struct {
	ListenerPort  int    `json:",omitempty"`
	Path          string `json:",omitempty"`
	LocalPathPort int    `json:",omitempty"`
	Protocol      string `json:",omitempty"`
}

// Expose configures paths exposed through a proxy.
type Expose struct {
	Checks bool         `json:",omitempty"`
	Paths  []ExposePath `json:",omitempty"`
}

// ProxyConfig is the mesh configuration of a proxy or of a service's sidecar.
type ProxyConfig struct {
	DestinationServiceName string            `json:",omitempty"`
	DestinationServiceID   string            `json:",omitempty"`
	LocalServiceAddress    string            `json:",omitempty"`
	LocalServicePort       int               `json:",omitempty"`
	LocalServiceSocketPath string            `json:",omitempty"`
	Mode                   string            `json:",omitempty"`
	TransparentProxy       *TransparentProxy `json:",omitempty"`
	Config                 map[string]any    `json:",omitempty"`
	Upstreams              []Upstream        `json:",omitempty"`
	MeshGateway            *MeshGateway      `json:",omitempty"`
	Expose                 *Expose           `json:",omitempty"`
}

// Connect is the mesh configuration of a service.
type Connect struct {
	Native         bool               `json:",omitempty"`
	SidecarService *ServiceDefinition `json:",omitempty"`
}

// Service is one service instance on a node.
type Service struct {
	// Kind is "" for a typical service, or a proxy/gateway kind.
	Kind string `json:",omitempty"`
	// ID is unique per node; it defaults to Service.
	ID      string
	Service string
	Tags    []string
	Address string
	// TaggedAddresses holds extra addresses (e.g. "lan_ipv4", "virtual").
	TaggedAddresses   map[string]ServiceAddress `json:",omitempty"`
	Meta              map[string]string
	Port              int
	SocketPath        string `json:",omitempty"`
	Weights           Weights
	EnableTagOverride bool
	Proxy             *ProxyConfig `json:",omitempty"`
	Connect           *Connect     `json:",omitempty"`
	// PeerName is set on instances imported from a peer; "" for local ones.
	PeerName string `json:",omitempty"`
	// Namespace and Partition are always "default" in peerd; kept for API shape.
	Namespace string `json:",omitempty"`
	Partition string `json:",omitempty"`
	RaftIndex
}

// CheckType is the definition of a health check that an agent runs.
type CheckType struct {
	CheckID   string `json:",omitempty"`
	Name      string `json:",omitempty"`
	Notes     string `json:",omitempty"`
	ServiceID string `json:",omitempty"`
	Status    string `json:",omitempty"`
	// TTL checks are passed by the application before TTL runs out.
	TTL decode.Duration `json:",omitempty"`
	// HTTP checks GET (or Method) the URL; 2xx passes, 429 warns, else critical.
	HTTP          string              `json:",omitempty"`
	Method        string              `json:",omitempty"`
	Header        map[string][]string `json:",omitempty"`
	Body          string              `json:",omitempty"`
	TLSSkipVerify bool                `json:",omitempty"`
	TLSServerName string              `json:",omitempty"`
	// TCP checks connect to host:port.
	TCP string `json:",omitempty"`
	// Interval is how often HTTP and TCP checks run; Timeout bounds one run.
	Interval decode.Duration `json:",omitempty"`
	Timeout  decode.Duration `json:",omitempty"`
	// DeregisterCriticalServiceAfter removes the service once the check has
	// been critical this long.
	DeregisterCriticalServiceAfter decode.Duration `json:",omitempty"`
	SuccessBeforePassing           int             `json:",omitempty"`
	FailuresBeforeWarning          int             `json:",omitempty"`
	FailuresBeforeCritical         int             `json:",omitempty"`
}

// RefusedField implements decode.RefusedFields: the check kinds of Consul's
// schema that peerd does not run get a reason rather than "unknown field".
func (*CheckType) RefusedField(key string) string {
	const only = "peerd runs TTL, HTTP and TCP checks only"
	switch key {
	case "args", "scriptargs", "script":
		return "script checks are not supported: " + only + ". A node daemon that holds CAP_BPF and " +
			"CAP_NET_ADMIN does not run commands for its API's callers (Consul needs enable_script_checks for the " +
			"same reason); use an HTTP or TCP check, or a TTL check that the script passes with " +
			"PUT /v1/agent/check/pass/:id"
	case "dockercontainerid", "shell":
		return "Docker checks are not supported: " + only + " (a Docker check is a script run in a container)"
	case "grpc", "grpcusetls":
		return "gRPC checks are not supported: " + only + "; a TCP check on the port is the nearest"
	case "h2ping", "h2pingusetls":
		return "H2PING checks are not supported: " + only + "; an HTTP check is the nearest"
	case "aliasnode", "aliasservice":
		return "alias checks are not supported: " + only
	case "udp", "osservice":
		return "UDP and OS service checks are not supported: " + only
	}
	return ""
}

// HealthCheckDefinition is what the catalog keeps of how a check runs.
type HealthCheckDefinition struct {
	HTTP                           string              `json:",omitempty"`
	TLSServerName                  string              `json:",omitempty"`
	TLSSkipVerify                  bool                `json:",omitempty"`
	Header                         map[string][]string `json:",omitempty"`
	Method                         string              `json:",omitempty"`
	Body                           string              `json:",omitempty"`
	TCP                            string              `json:",omitempty"`
	Interval                       decode.Duration     `json:",omitempty"`
	Timeout                        decode.Duration     `json:",omitempty"`
	TTL                            decode.Duration     `json:",omitempty"`
	DeregisterCriticalServiceAfter decode.Duration     `json:",omitempty"`
}

// HealthCheck is the state of one check on a node, optionally bound to a service.
type HealthCheck struct {
	Node        string
	CheckID     string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	Type        string
	Definition  HealthCheckDefinition
	PeerName    string `json:",omitempty"`
	RaftIndex
}

// ServiceDefinition is a service as an operator writes it: in an agent
// registration, a config file, or as a sidecar.
type ServiceDefinition struct {
	Kind              string                    `json:",omitempty"`
	ID                string                    `json:",omitempty"`
	Name              string                    `json:",omitempty"`
	Tags              []string                  `json:",omitempty"`
	Address           string                    `json:",omitempty"`
	TaggedAddresses   map[string]ServiceAddress `json:",omitempty"`
	Meta              map[string]string         `json:",omitempty"`
	Port              int                       `json:",omitempty"`
	SocketPath        string                    `json:",omitempty"`
	EnableTagOverride bool                      `json:",omitempty"`
	Weights           *Weights                  `json:",omitempty"`
	Check             *CheckType                `json:",omitempty"`
	Checks            []*CheckType              `json:",omitempty"`
	Proxy             *ProxyConfig              `json:",omitempty"`
	Connect           *Connect                  `json:",omitempty"`
	Namespace         string                    `json:",omitempty"`
	Partition         string                    `json:",omitempty"`
}

// ServiceNode is a service instance joined with the node it runs on.
type ServiceNode struct {
	Node    *Node
	Service *Service
}

// CheckServiceNode is a service instance with its node and every check that
// applies to it (its own checks and its node's).
type CheckServiceNode struct {
	Node    *Node
	Service *Service
	Checks  []*HealthCheck
}

// AggregatedStatus returns the worst status among checks: critical beats
// maintenance beats warning beats passing. No checks means passing.
func AggregatedStatus(checks []*HealthCheck) string {
	rank := map[string]int{HealthPassing: 0, HealthWarning: 1, HealthMaint: 2, HealthCritical: 3}
	worst := HealthPassing
	for _, c := range checks {
		if rank[c.Status] > rank[worst] {
			worst = c.Status
		}
	}
	return worst
}
