package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/peerd/peerd/internal/acl"
	"github.com/peerd/peerd/internal/jointoken"
	"github.com/peerd/peerd/internal/weborigin"

	"github.com/peerd/peerd/agent/checks"
	"github.com/peerd/peerd/agent/dns"
	"github.com/peerd/peerd/agent/local"
	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
)

// ErrNoGossipKey refuses a non-dev agent without a gossip key.
var ErrNoGossipKey = errors.New("no gossip key: outside -dev gossip must be encrypted, or anyone who reaches the gossip port can join the cluster, pose as a server and receive its state. " +
	"Generate a key once with `peerd keygen` and give it to every node with -encrypt KEY (encrypt = \"KEY\" in a config file), " +
	"or pass -insecure-gossip (insecure_gossip = true) to accept the risk")

// RequireGossipKey is the gossip key check of a node about to start its
// cluster member, once a join token has had its say: ErrNoGossipKey
// unless the node has a key, a keyring file, -insecure-gossip, or is in
// dev mode.
func (c *Config) RequireGossipKey() error {
	if c.Dev || c.InsecureGossip || c.Encrypt != "" || c.HasKeyringFile() {
		return nil
	}
	if c.JoinToken != "" || c.JoinTokenFile != "" {
		return fmt.Errorf("the join token carries no gossip key: %w", ErrNoGossipKey)
	}
	return ErrNoGossipKey
}

// Validate reports every problem with c, each naming the file and key, or
// the flag, to fix. agent.Start calls it; `peerd validate` runs it too (see
// Check), so a configuration it passes is one the agent starts with, but
// for what depends on the host: the bind address found on the interfaces,
// virtual IP ranges overlapping them, ports already taken.
func (c *Config) Validate() error {
	return c.validate(true)
}

// ValidateFiles is Validate for configuration read from files alone (peerd
// validate): -data-dir may still come from the command line, so its absence
// is not an error.
func (c *Config) ValidateFiles() error {
	return c.validate(false)
}

// Check is `peerd validate`: it loads the files over CommandLineConfig's
// defaults, as `peerd agent -config-file ...` does, and reports every
// problem of every file, then of the result.
func Check(paths ...string) error {
	c := CommandLineConfig()
	return errors.Join(c.LoadFiles(paths...), c.ValidateFiles())
}

func (c *Config) validate(needDataDir bool) error {
	var errs []error
	add := func(name, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{c.where(name)}, a...)...))
	}
	if needDataDir && !c.Dev && c.DataDir == "" {
		errs = append(errs, errors.New("-data-dir is required (or use -dev for an in-memory agent)"))
	}
	if c.Dev && c.DataDir != "" {
		add("data-dir", "%q: -dev keeps everything in memory: drop -data-dir", c.DataDir)
	}
	if err := catalog.ValidateDatacenter(c.Datacenter); err != nil {
		add("datacenter", "%v", err)
	}
	if c.ReloadDrainTimeout < 0 {
		add("reload-drain-timeout", "%s: must not be negative (0 stops the old process at once)", c.ReloadDrainTimeout)
	}
	switch {
	case c.BootstrapExpect < 0:
		add("bootstrap-expect", "%d: must not be negative", c.BootstrapExpect)
	case c.BootstrapExpect > 0 && !c.Server:
		add("bootstrap-expect", "%d needs a server: set server = true (-server)", c.BootstrapExpect)
	case c.Dev && c.BootstrapExpect > 1:
		add("bootstrap-expect", "%d: -dev runs one server: drop -bootstrap-expect", c.BootstrapExpect)
	}
	if c.NodeName != "" && !validNodeName(c.NodeName) {
		add("node", "%q: use letters, digits, '-' and '.' (a DNS label), at most 63 characters each part", c.NodeName)
	}
	if c.BindAddr != "" && net.ParseIP(c.BindAddr) == nil {
		add("bind-addr", "%q: not an IP address", c.BindAddr)
	}
	if c.AdvertiseAddr != "" {
		if ip := net.ParseIP(c.AdvertiseAddr); ip == nil || ip.IsUnspecified() {
			add("advertise", "%q: want an IP address other nodes can reach", c.AdvertiseAddr)
		}
	} else if ip := net.ParseIP(c.BindAddr); ip != nil && ip.IsUnspecified() {
		add("bind-addr", "%q: other nodes cannot reach this node there: set -advertise", c.BindAddr)
	}
	for _, a := range []struct {
		name, addr, example string
		optional            bool
	}{
		{"http-addr", c.HTTPAddr, "127.0.0.1:8500, or \"\" for no plaintext API", true},
		{"https-addr", c.HTTPSAddr, "127.0.0.1:8501, or \"\" for no HTTPS", true},
		{"grpc-addr", c.GRPCAddr, "127.0.0.1:8502", false},
		{"grpc-tls-addr", c.GRPCTLSAddr, "127.0.0.1:8503", false},
		{"gateway-addr", c.GatewayAddr, "0.0.0.0:8443, or \"\" for no gateway", true},
		{"dns-addr", c.DNSAddr, "127.0.0.1:8600, or \"\" for no DNS server", true},
		{"metrics-addr", c.MetricsAddr, "10.0.0.5:9102, or \"\" for /metrics on the HTTP API only", true},
	} {
		if a.optional && a.addr == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(a.addr); err != nil || !validPort(port) {
			add(a.name, "%q: want host:port with a port from 0 to 65535, e.g. %s", a.addr, a.example)
		}
	}
	for _, p := range []struct {
		name string
		port int
	}{{"serf-lan-port", c.SerfLANPort}, {"server-port", c.ServerPort}} {
		if p.port < 0 || p.port > 65535 {
			add(p.name, "%d: want a port from 0 (a free one) to 65535", p.port)
		}
	}
	if c.JoinToken != "" && c.JoinTokenFile != "" {
		add("join-token", "give the token once: -join-token or -join-token-file, not both")
	}
	if (c.JoinToken != "" || c.JoinTokenFile != "" || c.TrustBootstrap != "") && !c.InternalTLS {
		add("join-token", "join tokens and -trust-bootstrap are for cluster trust, which -internal-tls=false turns off")
	}
	if c.JoinToken != "" {
		if _, err := jointoken.Parse(c.JoinToken); err != nil {
			add("join-token", "%v", err)
		}
	}
	if c.Encrypt != "" {
		if _, err := c.GossipKey(); err != nil {
			errs = append(errs, err)
		}
	} else if !c.Dev && !c.InsecureGossip && c.JoinToken == "" && c.JoinTokenFile == "" && c.TrustBootstrap == "" && !c.HasKeyringFile() {
		// With a join token the key may ride in it: agent.Start checks
		// again once the node is admitted (RequireGossipKey).
		errs = append(errs, ErrNoGossipKey)
	}
	if _, err := dns.ParseDomain(c.DNSDomain()); err != nil {
		add("domain", "%v", err)
	}
	for _, r := range c.Recursors {
		if _, err := dns.ParseRecursor(r); err != nil {
			add("recursor", "%v", err)
		}
	}
	if _, err := state.ParseVirtualIPRange(c.VirtualIPv4Range(), 4); err != nil {
		add("virtual-ip-cidr", "%v", err)
	}
	if c.VirtualIPv6CIDR != "" {
		if _, err := state.ParseVirtualIPRange(c.VirtualIPv6CIDR, 6); err != nil {
			add("virtual-ip6-cidr", "%v (or \"\" for IPv4 virtual IPs only)", err)
		}
	}
	if c.VirtualIPGrace < 0 {
		add("VirtualIPGrace", "%v: must not be negative", c.VirtualIPGrace)
	}
	c.validatePeering(add)
	c.validateAutopilot(add)
	c.validateACL(add)
	if c.ProxyMark < 0 || c.ProxyMark > 0xffffffff {
		add("proxy-mark", "%d: want 0 (none) to 4294967295", c.ProxyMark)
	}
	if c.LeafTTL < 10*time.Second {
		add("leaf-ttl", "%v: want at least 10s", c.LeafTTL)
	}
	if _, err := c.TLSMinVersion(); err != nil {
		errs = append(errs, err)
	}
	c.validateHTTP(add, &errs)
	for _, p := range c.GatewayVIPs {
		if _, err := netip.ParsePrefix(p); err != nil {
			add("gateway-vip", "%q: want a CIDR prefix such as 203.0.113.0/24: %v", p, err)
		}
	}
	if len(c.GatewayVIPs) > 0 && c.GatewayAddr == "" {
		add("gateway-vip", "needs the gateway (-gateway-addr)")
	}
	if c.CgroupPath != "" && (c.TransparentPort < 1 || c.TransparentPort > 65535) {
		add("transparent-port", "%d: want a port from 1 to 65535 for the transparent listeners", c.TransparentPort)
	}
	if c.CgroupPath != "" && c.WorkloadNetns {
		for _, a := range c.WorkloadDNSList() {
			if err := checkListenAddr(a); err != nil {
				add("workload-dns-addrs", "%v", err)
			}
		}
	}
	if _, err := ParseLogLevel(c.LogLevel); err != nil {
		add("log-level", "%q: want debug, info, warn or error", c.LogLevel)
	}
	errs = append(errs, c.validateDefinitions()...)
	return errors.Join(errs...)
}

// validateHTTP checks the API's listeners, HTTPS certificate settings and
// browser protections.
func (c *Config) validateHTTP(add func(name, format string, a ...any), errs *[]error) {
	if c.HTTPAddr == "" && c.HTTPSAddr == "" {
		add("http-addr", "no HTTP API at all: keep -http-addr, or set -https-addr (ports { https = 8501 })")
	}
	if (c.HTTPSCertFile == "") != (c.HTTPSKeyFile == "") {
		add("https-cert-file", "give the certificate and its key together: -https-cert-file and -https-key-file (tls { https { cert_file key_file } })")
	}
	if c.HTTPSAddr != "" && c.HTTPSCertFile == "" && !c.InternalTLS {
		add("https-addr", "HTTPS needs a certificate: -https-cert-file and -https-key-file, or cluster trust (-internal-tls, the default), whose CA signs one")
	}
	if c.HTTPSVerifyIncoming && c.HTTPSCAFile == "" && !c.InternalTLS {
		add("https-verify-incoming", "client certificates need a CA to verify them: -https-ca-file (tls { https { ca_file } }), or cluster trust")
	}
	if c.HTTPSAddr == "" {
		for _, name := range []string{"https-cert-file", "https-ca-file", "https-verify-incoming"} {
			if w, ok := c.originOf(name); ok {
				*errs = append(*errs, fmt.Errorf("%s: no HTTPS listener to use it: set -https-addr (ports { https = 8501 })", w))
			}
		}
	}
	if _, err := c.HTTPSMinVersion(); err != nil {
		*errs = append(*errs, err)
	}
	for _, o := range c.HTTPAllowedOrigins {
		if _, err := weborigin.Parse(o); err != nil {
			add("http-allowed-origins", "%v", err)
		}
	}
	for _, h := range c.HTTPAllowedHosts {
		if err := weborigin.ValidateHost(h); err != nil {
			add("http-allowed-hosts", "%v", err)
		}
	}
}

// ACL down policies, as Consul names them.
var aclDownPolicies = []string{"extend-cache", "async-cache", "allow", "deny"}

// validateACL checks the acl block.
func (c *Config) validateACL(add func(name, format string, a ...any)) {
	switch c.ACL.DefaultPolicy {
	case "allow", "deny":
	default:
		add("acl-default-policy", "%q: want \"deny\" (refuse what no rule allows) or \"allow\"", c.ACL.DefaultPolicy)
	}
	if !slices.Contains(aclDownPolicies, c.ACL.DownPolicy) {
		add("acl.down_policy", "%q: want one of %s", c.ACL.DownPolicy, strings.Join(aclDownPolicies, ", "))
	}
	for _, t := range []struct{ name, v string }{
		{"acl.tokens.initial_management", c.ACL.Tokens.InitialManagement},
		{"acl.tokens.agent", c.ACL.Tokens.Agent},
		{"acl.tokens.default", c.ACL.Tokens.Default},
		{"acl.tokens.agent_recovery", c.ACL.Tokens.AgentRecovery},
	} {
		if err := acl.ValidateSecret(t.v); err != nil {
			add(t.name, "%v", err) // the secret itself is never in the message
		}
	}
	if m := c.ACL.Tokens.InitialManagement; m != "" && acl.ValidateSecret(m) == nil {
		if _, err := uuid.Parse(m); err != nil || len(m) != 36 {
			add("acl.tokens.initial_management", "is not a UUID: the leader makes a token with it as SecretID, which is a UUID (make one with `cat /proc/sys/kernel/random/uuid`)")
		}
	}
	if c.ACL.Tokens.InitialManagement != "" && c.ACL.Tokens.InitialManagement == c.ACL.Tokens.Default {
		add("acl.tokens.default", "is the initial management token: every request without a token would be a management request")
	}
}

// validateAutopilot checks the autopilot settings.
func (c *Config) validateAutopilot(add func(name, format string, a ...any)) {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"server-stabilization-time", c.ServerStabilizationTime},
		{"dead-server-reap-time", c.DeadServerReapTime},
		{"autopilot-last-contact-threshold", c.LastContactThreshold},
	} {
		if d.v < 0 {
			add(d.name, "%v: must not be negative", d.v)
		}
	}
	if c.MaxTrailingLogs < 0 {
		add("autopilot-max-trailing-logs", "%d: must not be negative", c.MaxTrailingLogs)
	}
}

// validatePeering checks the heartbeat timers against each other as the
// peering controller will, zero meaning its default.
func (c *Config) validatePeering(add func(name, format string, a ...any)) {
	if c.PeeringHeartbeatInterval < 0 {
		add("peering-heartbeat-interval", "%v: must not be negative", c.PeeringHeartbeatInterval)
	}
	if c.PeeringHeartbeatTimeout < 0 {
		add("peering-heartbeat-timeout", "%v: must not be negative", c.PeeringHeartbeatTimeout)
	}
	if c.PeeringStaleStreamTimeout < 0 {
		add("peering-stale-stream-timeout", "%v: must not be negative", c.PeeringStaleStreamTimeout)
	}
	for _, q := range []struct {
		name string
		v    int
	}{
		{"peering-max-imported-services", c.PeeringQuotas.MaxImportedServices},
		{"peering-max-imported-instances", c.PeeringQuotas.MaxImportedInstances},
		{"peering-max-in-flight-bytes", c.PeeringQuotas.MaxInFlightBytes},
		{"peering-max-messages-per-second", c.PeeringQuotas.MaxMessagesPerSecond},
		{"peering-message-burst", c.PeeringQuotas.MessageBurst},
	} {
		if q.v < 0 {
			add(q.name, "%d: must not be negative", q.v)
		}
	}
	interval, timeout := peeringDefaults()
	if c.PeeringHeartbeatInterval > 0 {
		interval = c.PeeringHeartbeatInterval
	}
	if c.PeeringHeartbeatTimeout > 0 {
		timeout = c.PeeringHeartbeatTimeout
	}
	if (c.PeeringHeartbeatInterval > 0 || c.PeeringHeartbeatTimeout > 0) && timeout <= interval {
		// Name the one that was set: the timeout if both were.
		name, v := "peering-heartbeat-timeout", c.PeeringHeartbeatTimeout
		if v <= 0 {
			name, v = "peering-heartbeat-interval", c.PeeringHeartbeatInterval
		}
		add(name, "%v: the heartbeat timeout (%v) must be longer than the interval (%v)", v, timeout, interval)
	}
	if s := c.PeeringStaleStreamTimeout; s > 0 && (s <= interval || s > timeout) {
		add("peering-stale-stream-timeout", "%v: must be longer than the heartbeat interval (%v) and at most the heartbeat timeout (%v); leave it unset for 3 intervals", s, interval, timeout)
	}
}

// validateDefinitions checks the services and checks from config files
// with the rules the agent's local state applies when it adds them.
func (c *Config) validateDefinitions() []error {
	var errs []error
	for _, def := range c.Services {
		if def == nil {
			continue
		}
		_, checkDefs, err := local.ServiceFromDefinition(def)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.defWhere(def, "service", def.Name), err))
			continue
		}
		for _, cd := range checkDefs {
			if err := checks.Validate(cd); err != nil {
				errs = append(errs, fmt.Errorf("%s: check %q: %w", c.defWhere(def, "service", def.Name), cd.CheckID, err))
			}
		}
	}
	for _, cd := range c.Checks {
		if cd == nil {
			continue
		}
		// The defaults local.State.AddCheck fills in before validating.
		cp := *cd
		if err := local.CheckDefaults(&cp); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.defWhere(cd, "check", ""), err))
			continue
		}
		if err := checks.Validate(&cp); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.defWhere(cd, "check", cp.CheckID), err))
		}
	}
	return errs
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 0 && n <= 65535
}

func validNodeName(n string) bool {
	if len(n) > 253 {
		return false
	}
	for _, part := range strings.Split(n, ".") {
		if part == "" || len(part) > 63 {
			return false
		}
		for _, r := range part {
			if !(r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
				return false
			}
		}
	}
	return true
}

// checkListenAddr checks an ip:port listener address (IP literal, port
// 1-65535).
func checkListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want ip:port, e.g. 127.0.0.1:53 or [::1]:53", addr)
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("%q: %q is not an IP address", addr, host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q is not 1-65535", addr, port)
	}
	return nil
}
