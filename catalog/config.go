package catalog

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"time"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/internal/nodetls"
	"github.com/peerd/peerd/internal/seal"
)

// Config configures a Cluster: this node's part in membership and, on
// server-mode nodes, in the replicated store.
type Config struct {
	// NodeName is this node's unique name in the cluster. Required.
	NodeName string
	// NodeID is this node's stable UUID. Required.
	NodeID string
	// Datacenter is the cluster's datacenter name; nodes of other datacenters
	// are not joined. Zero value: "dc1".
	Datacenter string

	// Server makes this node a raft voter holding the replicated state.
	Server bool
	// BootstrapExpect is how many servers to wait for before bootstrapping
	// raft (servers only; 0 = join an existing cluster, never bootstrap).
	BootstrapExpect int
	// InMemory keeps raft's log, stable store and snapshots in memory (dev
	// mode); nothing is written to disk.
	InMemory bool
	// DataDir holds raft's bolt store and snapshots (servers) and the gossip
	// keyring file (every node) when InMemory is false.
	DataDir string

	// BindAddr is the IP the gossip and raft listeners bind to.
	// Zero value: "127.0.0.1".
	BindAddr string
	// AdvertiseAddr is the IP other nodes reach this one at. Zero value:
	// BindAddr (which must then not be 0.0.0.0).
	AdvertiseAddr string
	// SerfPort is the gossip (memberlist) port; 0 picks a free port.
	SerfPort int
	// ServerPort is the raft port of a server; 0 picks a free port.
	ServerPort int
	// GRPCAddr and HTTPAddr are this node's API addresses, advertised to the
	// other members so writes and consistent reads can be relayed.
	GRPCAddr string
	HTTPAddr string
	// GRPCTLSAddr is a server's TLS gRPC address (the peering stream),
	// advertised so tokens can list the servers peers dial.
	GRPCTLSAddr string

	// RetryJoin lists gossip addresses (host or host:port) to join, retried
	// every RetryJoinInterval until one answers.
	RetryJoin         []string
	RetryJoinInterval time.Duration

	// EncryptKey is the gossip encryption key (16, 24 or 32 bytes): the
	// first key of the keyring of a node that has no keyring file yet
	// (DataDir/keyring, written then); once the file exists its keys, as
	// the last rotation left them, win. nil and no file leaves gossip
	// unencrypted.
	EncryptKey []byte

	// Secrets, when set (servers with cluster trust), seals every raft log
	// entry and snapshot: the CA's key and the peering secrets never reach
	// the disk in plaintext. Every server of the cluster needs the same key.
	Secrets *seal.Key

	// Timing holds the protocol timers; zero value: DefaultTiming().
	Timing Timing

	// ACL is the ACL system's cluster side: with Enabled, the leader keeps
	// the builtins (the global-management policy, the anonymous token) and
	// the initial management token in the state. Zero value: ACLs off.
	ACL ACLConfig

	// Autopilot is how the leader promotes new servers to voters and
	// removes failed ones (servers only).
	Autopilot AutopilotConfig

	// VirtualIPv4Range is the CIDR the leader takes imported services'
	// virtual IPv4 addresses from. Zero value: DefaultVirtualIPv4Range.
	VirtualIPv4Range string
	// VirtualIPv6Range is the CIDR of their virtual IPv6 addresses; ""
	// assigns none. DefaultConfig sets DefaultVirtualIPv6Range.
	VirtualIPv6Range string
	// VirtualIPGrace is how long an imported service must be gone before its
	// virtual IP is released (a reconnect's resync must not renumber).
	// Zero value: one minute.
	VirtualIPGrace time.Duration

	// TLS, when set, is this node's certificate and its cluster's roots:
	// raft and the internal gRPC port then speak mutual TLS, admitting
	// only nodes of this cluster, with raft for servers only, and Apply
	// authorised by the caller's role (doc.go, "Trust"). The certificate
	// must name this node (NodeName), its datacenter and its role (Server).
	// Nil keeps both plaintext and unauthenticated.
	TLS *nodetls.Source
	// Refusals counts refused connections and calls
	// (peerd_security_refusals_total); required with TLS, and it should be
	// the counter whose Refused method TLS reports to. Nil without TLS
	// means a counter of the cluster's own.
	Refusals *RefusalCounter

	// Build is the version string advertised to other members.
	Build string

	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
}

// Timing holds the timers of raft and gossip. The defaults suit a LAN; tests
// and dev mode use FastTiming().
type Timing struct {
	RaftHeartbeatTimeout time.Duration
	RaftElectionTimeout  time.Duration
	RaftLeaderLease      time.Duration
	RaftCommitTimeout    time.Duration
	// GossipProbeInterval and GossipProbeTimeout drive failure detection;
	// GossipSuspicionMult scales how long a suspect node has to refute.
	GossipProbeInterval time.Duration
	GossipProbeTimeout  time.Duration
	GossipSuspicionMult int
	GossipInterval      time.Duration
	// ReconcileInterval is how often the leader reconciles the catalog with
	// the gossip pool even without events.
	ReconcileInterval time.Duration
	// ApplyTimeout bounds one write, including forwarding and waiting for a
	// leader.
	ApplyTimeout time.Duration
	// AutopilotInterval is how often the leader judges the servers' health,
	// promotes stable non-voters and removes dead servers.
	AutopilotInterval time.Duration
	// ServerStabilizationTime is the default of
	// AutopilotConfig.ServerStabilizationTime.
	ServerStabilizationTime time.Duration
}

// DefaultTiming returns Consul's LAN defaults.
func DefaultTiming() Timing {
	return Timing{
		RaftHeartbeatTimeout: 1000 * time.Millisecond,
		RaftElectionTimeout:  1000 * time.Millisecond,
		RaftLeaderLease:      500 * time.Millisecond,
		// raft's default is 50 ms; followers learn of a commit only on the
		// next append, so stale reads and blocking queries on followers lag
		// by up to twice this. 10 ms costs an idle RPC per follower every
		// 10-20 ms.
		RaftCommitTimeout:   10 * time.Millisecond,
		GossipProbeInterval: 1 * time.Second,
		GossipProbeTimeout:  500 * time.Millisecond,
		GossipSuspicionMult: 4,
		GossipInterval:      200 * time.Millisecond,
		ReconcileInterval:   60 * time.Second,
		ApplyTimeout:        10 * time.Second,
		// Consul's autopilot checks server health every 2 s and promotes
		// after 10 s of health.
		AutopilotInterval:       time.Second,
		ServerStabilizationTime: 10 * time.Second,
	}
}

// FastTiming returns timers for one-machine clusters (dev mode and tests):
// elections and failure detection in well under a second.
func FastTiming() Timing {
	return Timing{
		RaftHeartbeatTimeout: 200 * time.Millisecond,
		RaftElectionTimeout:  200 * time.Millisecond,
		RaftLeaderLease:      100 * time.Millisecond,
		RaftCommitTimeout:    5 * time.Millisecond,
		GossipProbeInterval:  100 * time.Millisecond,
		GossipProbeTimeout:   50 * time.Millisecond,
		GossipSuspicionMult:  2,
		GossipInterval:       50 * time.Millisecond,
		ReconcileInterval:    5 * time.Second,
		ApplyTimeout:         10 * time.Second,
		// Short enough that a test's added server votes within a second or
		// two, long enough that a pass sees it several times first.
		AutopilotInterval:       100 * time.Millisecond,
		ServerStabilizationTime: time.Second,
	}
}

// DefaultConfig returns a client-mode configuration bound to loopback; set
// NodeName and NodeID.
func DefaultConfig() Config {
	return Config{
		Datacenter:        "dc1",
		BindAddr:          "127.0.0.1",
		RetryJoinInterval: 30 * time.Second,
		Timing:            DefaultTiming(),
		VirtualIPv4Range:  state.DefaultVirtualIPv4Range,
		VirtualIPv6Range:  state.DefaultVirtualIPv6Range,
		Autopilot:         AutopilotConfig{CleanupDeadServers: true},
	}
}

// DevConfig returns a single in-memory server that bootstraps itself.
func DevConfig() Config {
	c := DefaultConfig()
	c.Server, c.BootstrapExpect, c.InMemory = true, 1, true
	c.RetryJoinInterval = time.Second
	c.Timing = FastTiming()
	return c
}

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("node name is required"))
	}
	if c.NodeID == "" {
		errs = append(errs, errors.New("node ID is required"))
	}
	if c.BootstrapExpect < 0 {
		errs = append(errs, fmt.Errorf("bootstrap-expect %d: must not be negative", c.BootstrapExpect))
	}
	if c.BootstrapExpect > 0 && !c.Server {
		errs = append(errs, errors.New("bootstrap-expect needs server mode: add -server"))
	}
	if c.Server && !c.InMemory && c.DataDir == "" {
		errs = append(errs, errors.New("a server needs -data-dir (or -dev for an in-memory server)"))
	}
	if c.ACL.InitialManagement != "" {
		if err := state.ValidSecret("acl.tokens.initial_management", c.ACL.InitialManagement); err != nil {
			errs = append(errs, fmt.Errorf("%v: generate one with uuidgen", err))
		}
	}
	if c.Datacenter != "" {
		if err := ValidateDatacenter(c.Datacenter); err != nil {
			errs = append(errs, err)
		}
	}
	if ip := net.ParseIP(c.bindAddr()); ip == nil {
		errs = append(errs, fmt.Errorf("bind address %q: not an IP address", c.BindAddr))
	}
	adv := c.advertiseAddr()
	if ip := net.ParseIP(adv); ip == nil || ip.IsUnspecified() {
		errs = append(errs, fmt.Errorf("advertise address %q: set -advertise to an address other nodes can reach", adv))
	}
	if _, err := state.ParseVirtualIPRange(c.virtualIPv4Range(), 4); err != nil {
		errs = append(errs, fmt.Errorf("virtual IPv4 range: %w", err))
	}
	if c.VirtualIPv6Range != "" {
		if _, err := state.ParseVirtualIPRange(c.VirtualIPv6Range, 6); err != nil {
			errs = append(errs, fmt.Errorf("virtual IPv6 range: %w", err))
		}
	}
	if c.VirtualIPGrace < 0 {
		errs = append(errs, fmt.Errorf("virtual IP grace %v: must not be negative", c.VirtualIPGrace))
	}
	if err := c.Autopilot.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.TLS != nil {
		errs = append(errs, c.validateTLS()...)
	}
	switch len(c.EncryptKey) {
	case 0, 16, 24, 32:
	default:
		errs = append(errs, fmt.Errorf("gossip key is %d bytes: want 16, 24 or 32 (base64 of `peerd keygen`)", len(c.EncryptKey)))
	}
	return errors.Join(errs...)
}

func (c *Config) validateTLS() []error {
	var errs []error
	self := c.TLS.Self()
	role := identity.RoleClient
	if c.Server {
		role = identity.RoleServer
	}
	if self.Role != role {
		errs = append(errs, fmt.Errorf("node certificate %s is a %s's, but this node is a %s: issue it a %s certificate", self, self.Role, role, role))
	}
	if self.Node != c.NodeName {
		errs = append(errs, fmt.Errorf("node certificate %s names node %q, but this node is %q", self, self.Node, c.NodeName))
	}
	if self.Datacenter != c.datacenter() {
		errs = append(errs, fmt.Errorf("node certificate %s is for datacenter %q, but this node is in %q", self, self.Datacenter, c.datacenter()))
	}
	if c.Refusals == nil {
		errs = append(errs, errors.New("TLS needs a refusal counter (Refusals, the one the node's TLS source reports to)"))
	}
	return errs
}

// datacenterPattern is Consul's rule for datacenter names, which peering
// tokens, TLS server names and SPIFFE IDs carry.
var datacenterPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,63}$`)

// ValidDatacenter reports whether name is a datacenter name: 1 to 63
// letters, digits, '-' and '_'.
func ValidDatacenter(name string) bool { return datacenterPattern.MatchString(name) }

// ValidateDatacenter is ValidDatacenter as an error naming the rule.
func ValidateDatacenter(name string) error {
	if !ValidDatacenter(name) {
		return fmt.Errorf("%q is not a datacenter name: use 1 to 63 letters, digits, '-' and '_'", name)
	}
	return nil
}

func (c *Config) bindAddr() string {
	if c.BindAddr == "" {
		return "127.0.0.1"
	}
	return c.BindAddr
}

func (c *Config) advertiseAddr() string {
	if c.AdvertiseAddr != "" {
		return c.AdvertiseAddr
	}
	return c.bindAddr()
}

func (c *Config) virtualIPv4Range() string {
	if c.VirtualIPv4Range == "" {
		return state.DefaultVirtualIPv4Range
	}
	return c.VirtualIPv4Range
}

func (c *Config) virtualIPGrace() time.Duration {
	if c.VirtualIPGrace == 0 {
		return time.Minute
	}
	return c.VirtualIPGrace
}

func (c *Config) datacenter() string {
	if c.Datacenter == "" {
		return "dc1"
	}
	return c.Datacenter
}

func (c *Config) timing() Timing {
	if c.Timing == (Timing{}) {
		return DefaultTiming()
	}
	t := c.Timing
	// Timings written before autopilot existed leave its timers zero.
	d := DefaultTiming()
	if t.AutopilotInterval <= 0 {
		t.AutopilotInterval = d.AutopilotInterval
	}
	if t.ServerStabilizationTime <= 0 {
		t.ServerStabilizationTime = d.ServerStabilizationTime
	}
	return t
}
