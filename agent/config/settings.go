package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/peerd/peerd/agent/dns"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/decode"
	"github.com/peerd/peerd/l7proxy"
	"github.com/peerd/peerd/peering"
)

// setting is one knob of the agent: the Config field it sets, its flag, its
// file key, its default, its dev-mode value and its doc. The table below is
// the only place these are written: the flag set (Parse), the file loader
// (LoadFiles), DefaultConfig, ApplyDev and Validate's messages all read it.
type setting struct {
	// name names the field in messages: the flag's name when the setting
	// has a flag, the Go field's when it is set in code only. Settings that
	// set one field together share it (the flag -http-addr and the file keys
	// ports.http and addresses.http).
	name string
	// flag makes name a flag of `peerd agent`.
	flag bool
	// key is the file key, "group.leaf" inside a block (ports { http = 1 });
	// "" = no file key. Keys match case-insensitively, with or without
	// underscores, as Consul's do.
	key string
	// usage is the flag's help and the setting's doc.
	usage string
	// ptr returns the field in c: a *string, *bool, *int, *time.Duration,
	// *[]string or *map[string]string (or the services' and checks' slices,
	// with fromFile).
	ptr func(c *Config) any
	// def is the default (DefaultConfig) and dev the dev-mode value
	// (ApplyDev); nil leaves the field as it is. Both have the field's type.
	def, dev any
	// fromFile, when set, applies a file value its own way instead of
	// replacing the field: ports and addresses change half of a host:port,
	// services and checks accumulate across files.
	fromFile func(c *Config, file, key string, raw any) error
}

// settings lists every setting, in the order a file's keys are applied
// (ports before addresses). It is read, never written.
var settings = []setting{
	{name: "dev", flag: true, ptr: func(c *Config) any { return &c.Dev }, dev: true,
		usage: "run a complete single-node cluster in memory; free loopback ports unless given"},
	{name: "server", flag: true, key: "server", ptr: func(c *Config) any { return &c.Server }, dev: true,
		usage: "run as a server: hold the replicated state (raft voter)"},
	{name: "bootstrap-expect", flag: true, key: "bootstrap_expect", ptr: func(c *Config) any { return &c.BootstrapExpect }, dev: 1,
		usage: "servers to wait for before electing the first leader (1, 3 or 5)"},
	{name: "retry-join", flag: true, key: "retry_join", ptr: func(c *Config) any { return &c.RetryJoin },
		usage: "gossip address of a node to join, retried until it answers (repeatable)"},
	{name: "retry-interval", flag: true, key: "retry_interval", ptr: func(c *Config) any { return &c.RetryInterval },
		def: 30 * time.Second, dev: time.Second,
		usage: "time between -retry-join attempts"},
	{name: "data-dir", flag: true, key: "data_dir", ptr: func(c *Config) any { return &c.DataDir },
		usage: "directory for raft data, the node ID and registered services"},
	{name: "datacenter", flag: true, key: "datacenter", ptr: func(c *Config) any { return &c.Datacenter }, def: "dc1",
		usage: "datacenter (cluster) name"},
	{name: "node", flag: true, key: "node_name", ptr: func(c *Config) any { return &c.NodeName },
		usage: "node name (default: host name)"},
	{name: "node-id", flag: true, key: "node_id", ptr: func(c *Config) any { return &c.NodeID },
		usage: "node UUID (default: generated and kept in -data-dir)"},
	{name: "node-meta", flag: true, key: "node_meta", ptr: func(c *Config) any { return &c.NodeMeta },
		usage: "node metadata key:value (repeatable)"},
	{name: "bind-addr", flag: true, key: "bind_addr", ptr: func(c *Config) any { return &c.BindAddr }, dev: "127.0.0.1",
		usage: "IP for gossip and raft (default: the host's private IPv4; 127.0.0.1 with -dev)"},
	{name: "advertise", flag: true, key: "advertise_addr", ptr: func(c *Config) any { return &c.AdvertiseAddr },
		usage: "IP other nodes reach this one at (default: -bind-addr)"},

	{name: "http-addr", flag: true, ptr: func(c *Config) any { return &c.HTTPAddr }, def: "127.0.0.1:8500", dev: "127.0.0.1:0",
		usage: "HTTP API address host:port (port 0 = free port; \"\" = no plaintext API, with -https-addr)"},
	{name: "https-addr", flag: true, ptr: func(c *Config) any { return &c.HTTPSAddr },
		usage: "HTTPS API address host:port (port 0 = free port; \"\" = none, the default). Certificate: -https-cert-file, else one from the cluster CA"},
	{name: "https-cert-file", flag: true, ptr: func(c *Config) any { return &c.HTTPSCertFile },
		usage: "PEM certificate (and chain) of the HTTPS API; with -https-key-file (default: a certificate from the cluster CA)"},
	{name: "https-key-file", flag: true, ptr: func(c *Config) any { return &c.HTTPSKeyFile },
		usage: "PEM private key of -https-cert-file"},
	{name: "https-ca-file", flag: true, ptr: func(c *Config) any { return &c.HTTPSCAFile },
		usage: "PEM CA certificates that sign HTTPS client certificates, for -https-verify-incoming (default: the cluster CA)"},
	{name: "https-verify-incoming", flag: true, ptr: func(c *Config) any { return &c.HTTPSVerifyIncoming },
		usage: "HTTPS clients must present a certificate signed by -https-ca-file (or the cluster CA)"},
	{name: "https-tls-min-version", flag: true, ptr: func(c *Config) any { return &c.HTTPSTLSMinVersion },
		usage: "lowest TLS version of the HTTPS API: 1.2 or 1.3 (default 1.2)"},
	tlsBlock(),
	{name: "http-allowed-origins", flag: true, key: "http_config.allowed_origins", ptr: func(c *Config) any { return &c.HTTPAllowedOrigins },
		usage: "origin (scheme://host[:port]) whose browser pages may change state through the API, besides its own (repeatable)"},
	{name: "http-allowed-hosts", flag: true, key: "http_config.allowed_hosts", ptr: func(c *Config) any { return &c.HTTPAllowedHosts },
		usage: "name accepted in the API's Host header besides IP addresses, localhost and the node name (repeatable; DNS rebinding protection)"},
	{name: "grpc-addr", flag: true, ptr: func(c *Config) any { return &c.GRPCAddr }, def: ":8502", dev: "127.0.0.1:0",
		usage: "internal gRPC address host:port (port 0 = free port)"},
	{name: "grpc-tls-addr", flag: true, ptr: func(c *Config) any { return &c.GRPCTLSAddr }, def: ":8503", dev: "127.0.0.1:0",
		usage: "TLS gRPC address peers dial for the peering stream (servers; port 0 = free port)"},
	{name: "gateway-addr", flag: true, ptr: func(c *Config) any { return &c.GatewayAddr }, def: "0.0.0.0:8443", dev: "127.0.0.1:0",
		usage: "the node's mTLS gateway for peers and other nodes, host:port (port 0 = free port; \"\" = none)"},
	{name: "dns-addr", flag: true, ptr: func(c *Config) any { return &c.DNSAddr }, dev: "127.0.0.1:0",
		usage: "DNS server address host:port, UDP and TCP (port 0 = free port; \"\" = none)"},
	{name: "serf-lan-port", flag: true, key: "ports.serf_lan", ptr: func(c *Config) any { return &c.SerfLANPort }, def: 8301, dev: 0,
		usage: "gossip (memberlist) port, TCP and UDP"},
	{name: "server-port", flag: true, key: "ports.server", ptr: func(c *Config) any { return &c.ServerPort }, def: 8300, dev: 0,
		usage: "raft port of a server"},
	portOf("http-addr", "ports.http", func(c *Config) *string { return &c.HTTPAddr }),
	portOf("https-addr", "ports.https", func(c *Config) *string { return &c.HTTPSAddr }),
	portOf("grpc-addr", "ports.grpc", func(c *Config) *string { return &c.GRPCAddr }),
	portOf("grpc-tls-addr", "ports.grpc_tls", func(c *Config) *string { return &c.GRPCTLSAddr }),
	portOf("gateway-addr", "ports.gateway", func(c *Config) *string { return &c.GatewayAddr }),
	portOf("dns-addr", "ports.dns", func(c *Config) *string { return &c.DNSAddr }),
	hostOf("http-addr", "addresses.http", func(c *Config) *string { return &c.HTTPAddr }),
	hostOf("https-addr", "addresses.https", func(c *Config) *string { return &c.HTTPSAddr }),
	hostOf("grpc-addr", "addresses.grpc", func(c *Config) *string { return &c.GRPCAddr }),
	hostOf("grpc-tls-addr", "addresses.grpc_tls", func(c *Config) *string { return &c.GRPCTLSAddr }),
	hostOf("gateway-addr", "addresses.gateway", func(c *Config) *string { return &c.GatewayAddr }),
	hostOf("dns-addr", "addresses.dns", func(c *Config) *string { return &c.DNSAddr }),

	{name: "domain", flag: true, key: "domain", ptr: func(c *Config) any { return &c.Domain }, def: dns.DefaultDomain,
		usage: "DNS domain answered from the catalog"},
	{name: "recursor", flag: true, key: "recursors", ptr: func(c *Config) any { return &c.Recursors },
		usage: "DNS server (IP[:port]) names outside -domain are forwarded to (repeatable)"},
	{name: "virtual-ip-cidr", flag: true, key: "virtual_ip_cidr", ptr: func(c *Config) any { return &c.VirtualIPv4CIDR },
		def:   state.DefaultVirtualIPv4Range,
		usage: "range imported services' virtual IPv4 addresses are taken from"},
	{name: "virtual-ip6-cidr", flag: true, key: "virtual_ip6_cidr", ptr: func(c *Config) any { return &c.VirtualIPv6CIDR },
		def:   state.DefaultVirtualIPv6Range,
		usage: "range of their virtual IPv6 addresses (\"\" = IPv4 only)"},
	{name: "VirtualIPGrace", ptr: func(c *Config) any { return &c.VirtualIPGrace },
		usage: "how long an imported service must be gone before its virtual IP is released (0 = 1m)"},

	{name: "server-stabilization-time", flag: true, key: "autopilot.server_stabilization_time",
		ptr:   func(c *Config) any { return &c.ServerStabilizationTime },
		usage: "how long a server added after bootstrap must be healthy before it becomes a raft voter (default 10s)"},
	{name: "dead-server-cleanup", flag: true, key: "autopilot.cleanup_dead_servers",
		ptr: func(c *Config) any { return &c.CleanupDeadServers }, def: true,
		usage: "remove servers failed for -dead-server-reap-time from raft (never below a healthy quorum)"},
	{name: "dead-server-reap-time", flag: true, key: "autopilot.dead_server_reap_time",
		ptr: func(c *Config) any { return &c.DeadServerReapTime }, def: 72 * time.Hour,
		usage: "how long a server must have failed before -dead-server-cleanup removes it"},
	{name: "autopilot-last-contact-threshold", flag: true, key: "autopilot.last_contact_threshold",
		ptr: func(c *Config) any { return &c.LastContactThreshold }, def: 200 * time.Millisecond,
		usage: "longest a healthy server may go without hearing from the leader"},
	{name: "autopilot-max-trailing-logs", flag: true, key: "autopilot.max_trailing_logs",
		ptr: func(c *Config) any { return &c.MaxTrailingLogs }, def: 250,
		usage: "most raft log entries a healthy server may trail the leader by"},

	{name: "proxy-mark", flag: true, ptr: func(c *Config) any { return &c.ProxyMark }, def: l7proxy.DefaultMark,
		usage: "SO_MARK of the terminator's sockets, so the eBPF layer skips them (0 = none; needs CAP_NET_ADMIN)"},
	{name: "internal-tls", flag: true, key: "internal_tls", ptr: func(c *Config) any { return &c.InternalTLS }, def: true, dev: true,
		usage: "cluster trust: node certificates from the cluster CA and mutual TLS between nodes (the first server makes the CA; other nodes need -join-token); =false runs the internal channels in plaintext"},
	{name: "join-token", flag: true, key: "join_token", ptr: func(c *Config) any { return &c.JoinToken }, def: "",
		usage: "join credential from `peerd join-token create`: admits this node"},
	{name: "join-token-file", flag: true, key: "join_token_file", ptr: func(c *Config) any { return &c.JoinTokenFile }, def: "",
		usage: "file holding the join credential (a mounted secret; arguments are visible to every user of the host)"},
	{name: "trust-bootstrap", flag: true, key: "trust_bootstrap", ptr: func(c *Config) any { return &c.TrustBootstrap }, def: "",
		usage: "file from `peerd trust init`: the server it names starts the cluster from it, every other node joins with its token"},
	{name: "leaf-ttl", flag: true, ptr: func(c *Config) any { return &c.LeafTTL }, def: 72 * time.Hour,
		usage: "lifetime of the terminator's leaf certificates (renewed at half life); on servers also the longest leaf the CA signs"},
	{name: "proxy-tls-min-version", flag: true, ptr: func(c *Config) any { return &c.ProxyTLSMinVersion }, def: "1.3",
		usage: "lowest TLS version of the terminator: 1.3 or 1.2"},
	{name: "cgroup-path", flag: true, key: "dataplane.cgroup_path", ptr: func(c *Config) any { return &c.CgroupPath },
		usage: "cgroup v2 directory whose processes' connections to virtual IPs are captured (eBPF; \"\" = no capture)"},
	{name: "allow-root-cgroup", flag: true, key: "dataplane.allow_root_cgroup", ptr: func(c *Config) any { return &c.AllowRootCgroup },
		usage: "allow -cgroup-path to be the root of the cgroup hierarchy (every process of the host)"},
	{name: "transparent-port", flag: true, key: "dataplane.transparent_port", ptr: func(c *Config) any { return &c.TransparentPort }, def: 15001,
		usage: "port of the terminator's transparent listeners on 127.0.0.1 and ::1"},
	{name: "dataplane-fastpath", flag: true, key: "dataplane.fastpath", ptr: func(c *Config) any { return &c.FastPath }, def: true,
		usage: "sockmap fast path for the plaintext loopback legs (with -cgroup-path)"},
	{name: "workload-netns", flag: true, key: "dataplane.workload_netns", ptr: func(c *Config) any { return &c.WorkloadNetns }, def: true,
		usage: "open the transparent, DNS and owner's upstream listeners inside each workload network namespace under -cgroup-path (containers, pods); false serves peerd's own namespace only"},
	{name: "workload-dns-addrs", flag: true, key: "dataplane.workload_dns_addrs", ptr: func(c *Config) any { return &c.WorkloadDNSAddrs }, def: "127.0.0.1:53,[::1]:53",
		usage: "comma-separated ip:port of the DNS listeners (UDP and TCP) inside each workload namespace (\"\" = none; with -workload-netns)"},
	{name: "gateway-vip", flag: true, key: "dataplane.gateway_vips", ptr: func(c *Config) any { return &c.GatewayVIPs },
		usage: "CIDR of addresses that reach this node's gateway through the inbound capture layer (sk_lookup; repeatable)"},
	{name: "dataplane-interface", flag: true, key: "dataplane.interfaces", ptr: func(c *Config) any { return &c.DataplaneInterfaces },
		usage: "interface to attach the TC per-peer counters to (repeatable)"},
	{name: "bpf-pin-dir", flag: true, key: "dataplane.bpf_pin_dir", ptr: func(c *Config) any { return &c.BPFPinDir },
		usage: "bpffs directory for the dataplane's pins (default /sys/fs/bpf/peerd)"},

	{name: "encrypt", flag: true, key: "encrypt", ptr: func(c *Config) any { return &c.Encrypt },
		usage: "base64 gossip encryption key (peerd keygen); required outside -dev unless -insecure-gossip. Only the first key: rotations are kept in <data-dir>/keyring"},
	{name: "insecure-gossip", flag: true, key: "insecure_gossip", ptr: func(c *Config) any { return &c.InsecureGossip },
		usage: "run without a gossip key outside -dev: anyone who reaches the gossip port can join the cluster and pose as a server"},
	{name: "peering-heartbeat-interval", flag: true, key: "peering.heartbeat_interval", ptr: func(c *Config) any { return &c.PeeringHeartbeatInterval },
		usage: "heartbeat period of peering streams (default 15s)"},
	{name: "peering-heartbeat-timeout", flag: true, key: "peering.heartbeat_timeout", ptr: func(c *Config) any { return &c.PeeringHeartbeatTimeout },
		usage: "a peering with no heartbeat for this long is FAILING and redialed (default 2m)"},
	{name: "peering-stale-stream-timeout", flag: true, key: "peering.stale_stream_timeout", ptr: func(c *Config) any { return &c.PeeringStaleStreamTimeout },
		usage: "a peering stream with nothing received (no heartbeat, no data), or a send blocked, for this long is reset and resubscribed (default 3 heartbeat intervals, at most the heartbeat timeout)"},
	{name: "peering-max-imported-services", flag: true, key: "peering.max_imported_services", ptr: func(c *Config) any { return &c.PeeringQuotas.MaxImportedServices },
		def: peering.DefaultQuotas().MaxImportedServices, usage: "services one peer may have imported here; an upsert past it is NACKed"},
	{name: "peering-max-imported-instances", flag: true, key: "peering.max_imported_instances", ptr: func(c *Config) any { return &c.PeeringQuotas.MaxImportedInstances },
		def: peering.DefaultQuotas().MaxImportedInstances, usage: "service instances one peer may have imported here, over all its services"},
	{name: "peering-max-in-flight-bytes", flag: true, key: "peering.max_in_flight_bytes", ptr: func(c *Config) any { return &c.PeeringQuotas.MaxInFlightBytes },
		def: peering.DefaultQuotas().MaxInFlightBytes, usage: "bytes one peer's unfinished chunked resources may hold (also the largest resource)"},
	{name: "peering-max-messages-per-second", flag: true, key: "peering.max_messages_per_second", ptr: func(c *Config) any { return &c.PeeringQuotas.MaxMessagesPerSecond },
		def: peering.DefaultQuotas().MaxMessagesPerSecond, usage: "resources per second one peer may send, past -peering-message-burst"},
	{name: "peering-message-burst", flag: true, key: "peering.message_burst", ptr: func(c *Config) any { return &c.PeeringQuotas.MessageBurst },
		def: peering.DefaultQuotas().MessageBurst, usage: "resources one peer may send at once before -peering-max-messages-per-second applies"},
	{name: "peering-allow-local-gateways", flag: true, key: "peering.allow_local_gateways", ptr: func(c *Config) any { return &c.PeeringAllowLocalGateways },
		dev: true, usage: "import peer instances whose gateway is loopback, link-local, unspecified, multicast or this cluster's node address (default on in -dev only)"},
	{name: "peering-stream-secret-rotation", flag: true, key: "peering.stream_secret_rotation", ptr: func(c *Config) any { return &c.PeeringStreamSecretRotation },
		usage: "rotate acceptor peerings' stream secrets this often (default 24h; negative = only on demand)"},
	{name: "reload-drain-timeout", flag: true, key: "reload_drain_timeout", ptr: func(c *Config) any { return &c.ReloadDrainTimeout }, def: 30 * time.Second,
		usage: "on SIGHUP (systemctl reload), how long the old process drains open connections after the new one serves"},
	{name: "leave-on-terminate", flag: true, key: "leave_on_terminate", ptr: func(c *Config) any { return &c.LeaveOnTerminate }, def: true,
		usage: "leave the pool on SIGINT/SIGTERM"},
	{name: "log-level", flag: true, key: "log_level", ptr: func(c *Config) any { return &c.LogLevel }, def: "info",
		usage: "debug, info, warn or error"},
	{name: "log-json", flag: true, key: "log_json", ptr: func(c *Config) any { return &c.LogJSON },
		usage: "log JSON lines instead of text"},
	{name: "SyncInterval", ptr: func(c *Config) any { return &c.SyncInterval }, def: time.Minute, dev: 30 * time.Second,
		usage: "anti-entropy period"},

	{name: "metrics-addr", flag: true, key: "telemetry.prometheus_addr", ptr: func(c *Config) any { return &c.MetricsAddr },
		usage: "a separate, unauthenticated listener for /metrics, host:port, for a scraper on a private address (\"\" = none: /metrics is served on the HTTP API only, where ACLs need agent:read)"},

	// Consul's acl block. The tokens have no flags: arguments are visible
	// to every user of the host.
	{name: "acl-enabled", flag: true, key: "acl.enabled", ptr: func(c *Config) any { return &c.ACL.Enabled }, def: true, dev: false,
		usage: "Consul's ACL system on the HTTP API and DNS (default on outside -dev); =false only for a network where everyone who reaches the API may do anything"},
	{name: "acl-default-policy", flag: true, key: "acl.default_policy", ptr: func(c *Config) any { return &c.ACL.DefaultPolicy }, def: "deny",
		usage: "what ACLs decide where no rule of the token speaks: deny or allow"},
	{name: "acl.down_policy", key: "acl.down_policy", ptr: func(c *Config) any { return &c.ACL.DownPolicy }, def: "extend-cache",
		usage: "what a client agent does with a token it cannot resolve because no server answers: extend-cache (keep using a cached resolution; unknown tokens are refused), async-cache, allow or deny"},
	{name: "acl.enable_token_persistence", key: "acl.enable_token_persistence", ptr: func(c *Config) any { return &c.ACL.EnableTokenPersistence },
		usage: "keep the tokens set with PUT /v1/agent/token/* in <data-dir>/acl-tokens.json (0600); they win over the file's on restart"},
	{name: "acl.tokens.initial_management", key: "acl.tokens.initial_management", ptr: func(c *Config) any { return &c.ACL.Tokens.InitialManagement },
		usage: "SecretID of a management token the first leader creates (the ACL system's bootstrap without the API)"},
	{name: "acl.tokens.agent", key: "acl.tokens.agent", ptr: func(c *Config) any { return &c.ACL.Tokens.Agent },
		usage: "the token of the agent's own calls (anti-entropy, its catalog writes)"},
	{name: "acl.tokens.default", key: "acl.tokens.default", ptr: func(c *Config) any { return &c.ACL.Tokens.Default },
		usage: "the token of requests that carry none, and of DNS (\"\" = the anonymous token)"},
	{name: "acl.tokens.agent_recovery", key: "acl.tokens.agent_recovery", ptr: func(c *Config) any { return &c.ACL.Tokens.AgentRecovery },
		usage: "a token that works on this agent's /v1/agent/* endpoints even when no server answers"},

	defs("service", func(c *Config) *[]*state.ServiceDefinition { return &c.Services }),
	defs("services", func(c *Config) *[]*state.ServiceDefinition { return &c.Services }),
	defs("check", func(c *Config) *[]*state.CheckType { return &c.Checks }),
	defs("checks", func(c *Config) *[]*state.CheckType { return &c.Checks }),
}

// offable are the listeners a negative port turns off, as in Consul
// (ports { dns = -1 }, ports { http = -1 }; HTTPS is off unless a port is
// given).
var offable = []string{"dns-addr", "http-addr", "https-addr"}

// portOf is the file key that sets the port of the host:port field named
// name. For DNS, HTTP and HTTPS, a negative port turns the server off, as
// in Consul.
func portOf(name, key string, field func(*Config) *string) setting {
	return setting{name: name, key: key, ptr: func(c *Config) any { return field(c) },
		fromFile: func(c *Config, file, key string, raw any) error {
			port, err := decodeValue[int](key, raw)
			if err != nil {
				return err
			}
			if port < 0 && slices.Contains(offable, name) {
				*field(c) = ""
				return nil
			}
			*field(c) = replacePort(*field(c), port)
			return nil
		}}
}

// hostOf is the file key that sets the host of the host:port field named
// name. A DNS, HTTP or HTTPS server that is off stays off: HTTPS needs a
// port (ports.https or -https-addr).
func hostOf(name, key string, field func(*Config) *string) setting {
	return setting{name: name, key: key, ptr: func(c *Config) any { return field(c) },
		fromFile: func(c *Config, file, key string, raw any) error {
			host, err := decodeValue[string](key, raw)
			if err != nil {
				return err
			}
			if slices.Contains(offable, name) && *field(c) == "" {
				return nil
			}
			*field(c) = replaceHost(*field(c), host)
			return nil
		}}
}

// defs is a file key holding service or check definitions (one block or a
// list): they accumulate across keys and files, each remembered with where
// it was defined.
func defs[T any](key string, field func(*Config) *[]*T) setting {
	return setting{name: key, key: key, ptr: func(c *Config) any { return field(c) },
		fromFile: func(c *Config, file, key string, raw any) error {
			list, err := decodeValue[[]*T](key, raw)
			if err != nil {
				return err
			}
			for i, d := range list {
				if d == nil {
					continue
				}
				c.origins().defs[d] = fmt.Sprintf("%s: %s[%d]", file, key, i)
				*field(c) = append(*field(c), d)
			}
			return nil
		}}
}

// tlsKeys are the keys of Consul's tls.defaults and tls.https blocks that
// peerd takes, each with the flag of the setting it sets.
var tlsKeys = []struct{ key, flag string }{
	{"ca_file", "https-ca-file"},
	{"cert_file", "https-cert-file"},
	{"key_file", "https-key-file"},
	{"verify_incoming", "https-verify-incoming"},
	{"tls_min_version", "https-tls-min-version"},
}

// tlsBlock is Consul's tls block, of which peerd reads the HTTPS API's
// part: tls { defaults { ca_file cert_file key_file verify_incoming
// tls_min_version } https { ... } }, https's keys overriding defaults'.
// The internal channels use cluster trust, so tls.internal_rpc and
// tls.grpc are refused with that reason.
func tlsBlock() setting {
	return setting{name: "tls", key: "tls", ptr: func(c *Config) any { return &c.HTTPSCertFile },
		fromFile: func(c *Config, file, key string, raw any) error {
			m, err := decodeValue[map[string]any](key, raw)
			if err != nil {
				return err
			}
			var errs []error
			fail := func(err error) { errs = append(errs, err) }
			top := indexKeys("tls.", m, fail)
			for _, group := range []string{"defaults", "https"} {
				raw, ok := top.take(group)
				if !ok || raw == nil {
					continue
				}
				prefix := "tls." + group
				gm, err := decodeValue[map[string]any](prefix, raw)
				if err != nil {
					fail(err)
					continue
				}
				idx := indexKeys(prefix+".", gm, fail)
				for _, k := range tlsKeys {
					raw, ok := idx.take(k.key)
					if !ok || raw == nil {
						continue
					}
					if err := c.setTLSKey(prefix+"."+k.key, k.flag, raw); err != nil {
						fail(err)
						continue
					}
					c.origins().settings[k.flag] = file + ": " + prefix + "." + k.key
				}
				var names []string
				for _, k := range tlsKeys {
					names = append(names, k.key)
				}
				for _, k := range idx.unused() {
					fail(fmt.Errorf("%s.%s: unknown key; %s takes %s", prefix, k, prefix, strings.Join(names, ", ")))
				}
			}
			for _, k := range top.unused() {
				switch decode.CanonicalKey(k) {
				case decode.CanonicalKey("internal_rpc"), decode.CanonicalKey("grpc"):
					fail(fmt.Errorf("tls.%s: peerd's internal channels use cluster trust (node certificates from the cluster CA, -internal-tls), not certificate files: remove the block", k))
				default:
					fail(fmt.Errorf("tls.%s: unknown key; tls takes defaults and https", k))
				}
			}
			return errors.Join(errs...)
		}}
}

// setTLSKey sets the HTTPS setting named flag from the file key key.
func (c *Config) setTLSKey(key, flag string, raw any) error {
	switch flag {
	case "https-ca-file":
		return setFrom(&c.HTTPSCAFile, key, raw)
	case "https-cert-file":
		return setFrom(&c.HTTPSCertFile, key, raw)
	case "https-key-file":
		return setFrom(&c.HTTPSKeyFile, key, raw)
	case "https-verify-incoming":
		return setFrom(&c.HTTPSVerifyIncoming, key, raw)
	case "https-tls-min-version":
		v, err := decodeValue[string](key, raw)
		if err != nil {
			return err
		}
		switch v {
		case "TLSv1_2", "tlsv1_2", "1.2":
			c.HTTPSTLSMinVersion = "1.2"
		case "TLSv1_3", "tlsv1_3", "1.3":
			c.HTTPSTLSMinVersion = "1.3"
		default:
			return fmt.Errorf("%s %q: want TLSv1_2 or TLSv1_3", key, v)
		}
		return nil
	}
	return fmt.Errorf("%s: no such setting", key)
}
