package config

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/peerd/peerd/agent/admission"
	"github.com/peerd/peerd/agent/dns"
	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/sockets"
	"github.com/peerd/peerd/l7proxy"
	"github.com/peerd/peerd/peering"
)

// Config is everything `peerd agent` is configured with, from flags and
// config files. The flag, file key and defaults of each field are in the
// settings table (settings.go).
type Config struct {
	// Dev runs a single in-memory server; every listener not set explicitly
	// binds a free loopback port.
	Dev bool
	// Server makes this node a raft voter; BootstrapExpect is how many
	// servers to wait for before electing the first leader.
	Server          bool
	BootstrapExpect int
	// RetryJoin lists gossip addresses to join, retried every RetryInterval.
	RetryJoin     []string
	RetryInterval time.Duration
	// DataDir holds raft data, the node ID and API-registered services.
	// Required except in dev mode.
	DataDir    string
	Datacenter string
	// NodeName defaults to the host name; NodeID to a UUID kept in DataDir.
	NodeName string
	NodeID   string
	NodeMeta map[string]string
	// BindAddr is the IP gossip and raft listen on; AdvertiseAddr what other
	// nodes dial (default: BindAddr). Default bind: the host's single private
	// IPv4 address, or 127.0.0.1 in dev mode.
	BindAddr      string
	AdvertiseAddr string
	// HTTPAddr is the HTTP API's host:port; port 0 picks a free port.
	// Default 127.0.0.1:8500, this host only (dev: 127.0.0.1:0).
	HTTPAddr string
	// HTTPSAddr is the HTTPS API's host:port; "" (the default, dev mode
	// too) = no HTTPS. Its certificate is HTTPSCertFile and HTTPSKeyFile,
	// else one the cluster CA signs for the node (with cluster trust),
	// renewed like the node certificate. With HTTPSVerifyIncoming clients
	// must present a certificate signed by HTTPSCAFile (default: the
	// cluster CA). HTTPSTLSMinVersion is "1.2" (default) or "1.3".
	HTTPSAddr           string
	HTTPSCertFile       string
	HTTPSKeyFile        string
	HTTPSCAFile         string
	HTTPSVerifyIncoming bool
	HTTPSTLSMinVersion  string
	// HTTPAllowedOrigins are the origins (scheme://host[:port]) whose
	// browser pages may change state through the API besides its own;
	// HTTPAllowedHosts the names accepted in its Host header besides IP
	// addresses, localhost and the node name. Empty = only those.
	HTTPAllowedOrigins []string
	HTTPAllowedHosts   []string
	// GRPCAddr is the internal gRPC listener the cluster's other nodes dial
	// (write forwarding, the mirror, SignLeaf). An empty host means the bind
	// address, so a multi-host cluster works on the defaults. Default :8502
	// (dev: 127.0.0.1:0).
	GRPCAddr string
	// GRPCTLSAddr is the TLS gRPC listener peers dial for the peering
	// stream (servers only); an empty host means the bind address. Default
	// :8503 (dev: 127.0.0.1:0).
	GRPCTLSAddr string
	// GatewayAddr is the node's gateway: the mTLS listener that peers and
	// the cluster's other nodes dial to reach the services on this node.
	// Its port is advertised in the node's metadata. "" = no gateway.
	// Default 0.0.0.0:8443 (dev: 127.0.0.1:0).
	GatewayAddr string
	// DNSAddr is host:port of the DNS server (UDP and TCP); "" = none.
	// `peerd agent` defaults to DefaultDNSAddr, Consul's port; DefaultConfig
	// leaves it off, so that embedders and tests running several agents on
	// one host do not collide on it. Dev: 127.0.0.1:0.
	DNSAddr string
	// Domain is the DNS domain answered from the catalog. Default "peerd.".
	Domain string
	// Recursors are IP[:port] DNS servers other names are forwarded to.
	Recursors []string
	// VirtualIPv4CIDR and VirtualIPv6CIDR are the ranges imported services'
	// virtual IPs are taken from (servers assign them). Defaults
	// 240.0.0.0/4 and fd70:6565:7264::/48; an empty IPv6 range assigns
	// IPv4 only.
	VirtualIPv4CIDR string
	VirtualIPv6CIDR string
	// VirtualIPGrace is how long an imported service must be gone before its
	// virtual IP is released (tests shorten it). Default 1m.
	VirtualIPGrace time.Duration
	// ProxyMark is the SO_MARK of the terminator's sockets (0 = none).
	ProxyMark int
	// InternalTLS is cluster trust: every node holds a node certificate
	// (the first server makes the cluster's CA; the others are admitted
	// with JoinToken) and the internal channels are mutual TLS. On by
	// default; dev mode has it in memory. -internal-tls=false is the
	// plaintext mode, for trusted networks only.
	InternalTLS bool
	// JoinToken is the join credential (`peerd join-token create`) a new
	// node is admitted with; unused once the node holds a certificate.
	// JoinTokenFile names a file holding it instead (a mounted secret:
	// arguments are visible to every user of the host).
	JoinToken     string
	JoinTokenFile string
	// TrustBootstrap is a file made by `peerd trust init`: the server it
	// names as first starts the cluster from it; any other node ignores it
	// and joins with its token.
	TrustBootstrap string
	// LeafTTL is the lifetime of the terminator's leaf certificates; they
	// are renewed at half their life. On a server it also caps the leaves
	// its CA signs. Default 72h.
	LeafTTL time.Duration
	// ProxyTLSMinVersion is "1.3" (default) or "1.2".
	ProxyTLSMinVersion string
	// CgroupPath turns on transparent capture for the processes of this
	// cgroup v2 directory (and its children): their connections to
	// virtual IPs go to the terminator. The root of the hierarchy is
	// refused unless AllowRootCgroup.
	CgroupPath      string
	AllowRootCgroup bool
	// TransparentPort is the port of the terminator's transparent
	// listeners on 127.0.0.1 and ::1 (default 15001).
	TransparentPort int
	// FastPath puts the plaintext loopback legs into the eBPF sockmap
	// (default true; only with CgroupPath).
	FastPath bool
	// WorkloadNetns opens peerd's listeners (transparent, DNS, the
	// owner's upstreams) inside the network namespace of every workload
	// under CgroupPath that has one of its own (containers, pods): the
	// ztunnel in-pod model (default true; only with CgroupPath). False
	// serves only workloads in peerd's own namespace.
	WorkloadNetns bool
	// WorkloadDNSAddrs are the comma-separated ip:port addresses of the
	// DNS listeners (UDP and TCP) inside each workload namespace (default
	// "127.0.0.1:53,[::1]:53"; "" = none).
	WorkloadDNSAddrs string
	// GatewayVIPs are prefixes (CIDR) of addresses that reach this node's
	// gateway on its port without being configured on an interface: the
	// inbound capture layer (sk_lookup) hands such connections to the
	// gateway listener.
	GatewayVIPs []string
	// DataplaneInterfaces get the TC per-peer counters.
	DataplaneInterfaces []string
	// BPFPinDir is where programs, maps and links are pinned (default
	// /sys/fs/bpf/peerd).
	BPFPinDir string
	// SerfLANPort and ServerPort default to 8301 and 8300 (dev: free ports).
	SerfLANPort int
	ServerPort  int
	// Encrypt is the base64 gossip key (`peerd keygen`): the first key of
	// the node's keyring, kept in DataDir/keyring once written. Required
	// outside dev mode unless the keyring file exists or InsecureGossip.
	Encrypt string
	// InsecureGossip lets a non-dev agent run with unencrypted gossip; the
	// agent logs a warning and /v1/agent/self shows it.
	InsecureGossip bool
	// LeaveOnTerminate leaves the gossip pool on SIGINT/SIGTERM, so the
	// leader removes this node's registrations instead of marking them
	// critical. Default true.
	LeaveOnTerminate bool
	// LogLevel is debug, info, warn or error; LogJSON switches to JSON lines.
	LogLevel string
	LogJSON  bool
	// Services and Checks are defined in config files.
	Services []*state.ServiceDefinition
	Checks   []*state.CheckType
	// SyncInterval is the anti-entropy period (default 1m).
	SyncInterval time.Duration
	// Version is reported by the API and advertised to other members.
	Version string
	// Timing overrides the protocol timers (tests); zero value: defaults
	// (dev: fast).
	Timing catalog.Timing
	// Autopilot (servers; the leader's settings apply): a server added after
	// bootstrap votes only once it has been healthy for
	// ServerStabilizationTime (0 = 10s; tests' fast timing: 1s). With
	// CleanupDeadServers (default true) a server failed for
	// DeadServerReapTime (default 72h) is removed from raft, never leaving
	// the healthy voters without quorum. A healthy server hears from the
	// leader within LastContactThreshold (default 200ms) and trails it by
	// at most MaxTrailingLogs entries (default 250).
	ServerStabilizationTime time.Duration
	CleanupDeadServers      bool
	DeadServerReapTime      time.Duration
	LastContactThreshold    time.Duration
	MaxTrailingLogs         int
	// PeeringHeartbeatInterval and PeeringHeartbeatTimeout tune the peering
	// stream: a heartbeat every interval; FAILING (and a reconnect) after the
	// timeout without one. Defaults: 15 s and 2 m, Consul's.
	PeeringHeartbeatInterval time.Duration
	PeeringHeartbeatTimeout  time.Duration
	// PeeringStaleStreamTimeout is peering.Config.StaleStreamTimeout: a
	// stream silent (or with a send blocked) this long is reset. Zero: 3
	// heartbeat intervals, at most the heartbeat timeout.
	PeeringStaleStreamTimeout time.Duration
	// PeeringQuotas bound what each peer can make this cluster import and
	// do (peering.Quotas; defaults peering.DefaultQuotas, zero fields mean
	// them).
	PeeringQuotas peering.Quotas
	// PeeringAllowLocalGateways imports instances whose gateway is a
	// loopback, link-local, unspecified or multicast address or one of
	// this cluster's node addresses. Off by default; on in dev mode, whose
	// clusters all run on 127.0.0.1.
	PeeringAllowLocalGateways bool
	// PeeringStreamSecretRotation is how long an acceptor's stream secret
	// lives before the leader rotates it. Zero: 24 h; negative: no schedule
	// (POST /v1/peering/<name>/rotate-secret still rotates).
	PeeringStreamSecretRotation time.Duration
	// Peering, when set, adjusts the peering controller's configuration
	// (tests shorten heartbeats).
	Peering func(*peering.Config)
	// Admission, when set, adjusts the admission server's configuration
	// (tests move its clock).
	Admission func(*admission.Config)
	// Proxy, when set, adjusts the terminator's configuration (tests
	// shorten timeouts).
	Proxy func(*l7proxy.Config)
	// LogOutput receives the agent's logs; nil means os.Stderr (tests read
	// the log here).
	LogOutput io.Writer
	// Sockets opens the agent's listening sockets; nil opens them
	// directly. agent.RunReloadable sets one that hands them to the next
	// process on a reload (internal/sockets).
	Sockets sockets.Opener
	// BeforeState, when set, runs after the agent's first listeners are
	// open and before the cluster member opens its state (the raft store
	// in DataDir): a process taking over from another waits there until
	// the other has released it.
	BeforeState func(ctx context.Context) error
	// CatchUpBeforeServing, when positive, makes Start wait up to this
	// long for a leader and this node's state to catch up before the
	// terminator, DNS and the APIs serve: a process taking over sockets
	// lets connections queue rather than answer "no cluster leader".
	CatchUpBeforeServing time.Duration
	// ReloadDrainTimeout bounds how long a process that handed over to a
	// new one (SIGHUP) drains its open connections before it exits.
	ReloadDrainTimeout time.Duration

	// ACL is Consul's acl { ... } block: the ACL system guarding the HTTP
	// API and DNS.
	ACL ACLConfig
	// MetricsAddr is a separate listener for /metrics (host:port), without
	// authentication: for a scraper on a private address. "" = none; the
	// HTTP API's /metrics needs agent:read then.
	MetricsAddr string

	// origin says where each setting's value came from (a file and key, or
	// a flag), so that Validate names what to fix. Nil for a Config built
	// in code: messages then name the flag.
	origin *origins
}

// ACLConfig is Consul's acl block.
type ACLConfig struct {
	// Enabled turns the ACL system on (default on outside -dev).
	Enabled bool
	// DefaultPolicy ("allow" or "deny") decides what no rule speaks to.
	DefaultPolicy string
	// DownPolicy is Consul's down_policy, accepted for compatibility.
	DownPolicy string
	// EnableTokenPersistence keeps tokens set through /v1/agent/token/* in
	// the data directory.
	EnableTokenPersistence bool
	// Tokens are the agent's own tokens.
	Tokens ACLTokens
}

// ACLTokens is the acl.tokens block. Each is a token's SecretID.
type ACLTokens struct {
	// InitialManagement is a management token the leader creates.
	InitialManagement string
	// Agent is the token of the agent's own calls.
	Agent string
	// Default is the token of requests that carry none (and of DNS).
	Default string
	// AgentRecovery works on this agent's agent endpoints when the servers
	// cannot be reached.
	AgentRecovery string
}

// DefaultDNSAddr is where `peerd agent` serves DNS unless told otherwise.
const DefaultDNSAddr = "127.0.0.1:8600"

// DefaultConfig returns the configuration of a production client agent: the
// settings table's defaults. DNS is off (see DNSAddr); CommandLineConfig
// turns it on.
func DefaultConfig() Config {
	var c Config
	for _, s := range settings {
		if s.def != nil {
			s.assign(&c, s.def)
		}
	}
	return c
}

// CommandLineConfig is what `peerd agent` and `peerd validate` start from
// before -dev, files and flags: DefaultConfig with the DNS server on
// Consul's port.
func CommandLineConfig() Config {
	c := DefaultConfig()
	c.DNSAddr = DefaultDNSAddr
	return c
}

// DevConfig returns DefaultConfig turned into dev mode: one in-memory server
// on loopback with free ports.
func DevConfig() Config {
	c := DefaultConfig()
	c.ApplyDev()
	return c
}

// ApplyDev switches c to dev mode: every setting with a dev-mode value in
// the table takes it. Files and flags applied afterwards still win.
func (c *Config) ApplyDev() {
	for _, s := range settings {
		if s.dev != nil {
			s.assign(c, s.dev)
		}
	}
}

// assign sets the field of s in c to v, which has the field's type.
func (s *setting) assign(c *Config, v any) {
	reflect.ValueOf(s.ptr(c)).Elem().Set(reflect.ValueOf(v))
}

// DNSDomain is Domain, or the DNS server's default when it is empty.
func (c *Config) DNSDomain() string {
	if c.Domain == "" {
		return dns.DefaultDomain
	}
	return c.Domain
}

// VirtualIPv4Range is VirtualIPv4CIDR, or the catalog's default range when
// it is empty.
func (c *Config) VirtualIPv4Range() string {
	if c.VirtualIPv4CIDR == "" {
		return state.DefaultVirtualIPv4Range
	}
	return c.VirtualIPv4CIDR
}

// CheckVirtualIPOverlap refuses virtual IP ranges that overlap one of addrs,
// this node's interface networks (net.InterfaceAddrs). It is the one check
// of the start-up that depends on the host, so Validate does not run it.
func (c *Config) CheckVirtualIPOverlap(addrs []net.Addr) error {
	for _, r := range []struct {
		name, cidr string
		family     int
	}{{"virtual-ip-cidr", c.VirtualIPv4Range(), 4}, {"virtual-ip6-cidr", c.VirtualIPv6CIDR, 6}} {
		if r.cidr == "" {
			continue
		}
		p, err := state.ParseVirtualIPRange(r.cidr, r.family)
		if err != nil {
			return fmt.Errorf("%s: %w", c.where(r.name), err)
		}
		if err := state.CheckVirtualIPRangeOverlap(p, addrs); err != nil {
			return fmt.Errorf("%s: %w", c.where(r.name), err)
		}
	}
	return nil
}

// HasKeyringFile reports whether DataDir holds a gossip keyring file from
// an earlier run, whose keys the agent uses instead of Encrypt.
func (c *Config) HasKeyringFile() bool {
	if c.Dev || c.DataDir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(c.DataDir, catalog.KeyringFile))
	return err == nil
}

// GossipKey decodes Encrypt; nil when gossip is not encrypted.
func (c *Config) GossipKey() ([]byte, error) {
	if c.Encrypt == "" {
		return nil, nil
	}
	k, err := base64.StdEncoding.DecodeString(c.Encrypt)
	if err != nil {
		return nil, fmt.Errorf("%s: not base64: %w (generate one with `peerd keygen`)", c.where("encrypt"), err)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf("%s: key is %d bytes, want 16, 24 or 32 (generate one with `peerd keygen`)", c.where("encrypt"), len(k))
}

// TLSMinVersion parses ProxyTLSMinVersion.
func (c *Config) TLSMinVersion() (uint16, error) {
	switch c.ProxyTLSMinVersion {
	case "", "1.3":
		return tls.VersionTLS13, nil
	case "1.2":
		return tls.VersionTLS12, nil
	}
	return 0, fmt.Errorf("%s %q: want 1.3 or 1.2", c.where("proxy-tls-min-version"), c.ProxyTLSMinVersion)
}

// HTTPSMinVersion parses HTTPSTLSMinVersion.
func (c *Config) HTTPSMinVersion() (uint16, error) {
	switch c.HTTPSTLSMinVersion {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("%s %q: want 1.2 or 1.3", c.where("https-tls-min-version"), c.HTTPSTLSMinVersion)
}

// peeringDefaults are the heartbeat timers the agent uses when
// PeeringHeartbeatInterval or PeeringHeartbeatTimeout is zero.
func peeringDefaults() (interval, timeout time.Duration) {
	pc := peering.DefaultConfig()
	return pc.HeartbeatInterval, pc.HeartbeatTimeout
}

// ParseLogLevel is the slog level -log-level names, in any case: debug (or
// trace), info, warn (or warning), error. For anything else it returns
// slog.LevelInfo and an error.
func ParseLogLevel(level string) (slog.Level, error) {
	switch strings.ToLower(level) {
	case "debug", "trace":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return slog.LevelInfo, fmt.Errorf("log level %q: want debug, info, warn or error", level)
}

// WorkloadDNSList is WorkloadDNSAddrs split at commas (empty items
// dropped).
func (c *Config) WorkloadDNSList() []string {
	var out []string
	for _, a := range strings.Split(c.WorkloadDNSAddrs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}
