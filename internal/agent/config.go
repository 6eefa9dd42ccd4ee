package agent

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/decode"
	"github.com/peerd/peerd/internal/dns"
	"github.com/peerd/peerd/l7proxy"
	"github.com/peerd/peerd/peering"
)

// Config is everything `peerd agent` is configured with, from flags and
// config files.
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
	// LeafTTL is the lifetime of the terminator's leaf certificates; they
	// are renewed at half their life. Default 72h.
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
	// Encrypt is the base64 gossip key (`peerd keygen`).
	Encrypt string
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
	// PeeringHeartbeatInterval and PeeringHeartbeatTimeout tune the peering
	// stream: a heartbeat every interval; FAILING (and a reconnect) after the
	// timeout without one. Defaults: 15 s and 2 m, Consul's.
	PeeringHeartbeatInterval time.Duration
	PeeringHeartbeatTimeout  time.Duration
	// Peering, when set, adjusts the peering controller's configuration
	// (tests shorten heartbeats).
	Peering func(*peering.Config)
	// Proxy, when set, adjusts the terminator's configuration (tests
	// shorten timeouts).
	Proxy func(*l7proxy.Config)
}

// DefaultDNSAddr is where `peerd agent` serves DNS unless told otherwise.
const DefaultDNSAddr = "127.0.0.1:8600"

// DefaultConfig returns the configuration of a production client agent; the
// flags and files change it.
func DefaultConfig() Config {
	return Config{
		Datacenter:         "dc1",
		HTTPAddr:           "127.0.0.1:8500",
		GRPCAddr:           ":8502",
		GRPCTLSAddr:        ":8503",
		GatewayAddr:        "0.0.0.0:8443",
		Domain:             dns.DefaultDomain,
		VirtualIPv4CIDR:    state.DefaultVirtualIPv4Range,
		VirtualIPv6CIDR:    state.DefaultVirtualIPv6Range,
		ProxyMark:          l7proxy.DefaultMark,
		LeafTTL:            72 * time.Hour,
		ProxyTLSMinVersion: "1.3",
		TransparentPort:    15001,
		FastPath:           true,
		SerfLANPort:        8301,
		ServerPort:         8300,
		RetryInterval:      30 * time.Second,
		LeaveOnTerminate:   true,
		LogLevel:           "info",
		SyncInterval:       time.Minute,
	}
}

// DevConfig returns DefaultConfig turned into dev mode: one in-memory server
// on loopback with free ports.
func DevConfig() Config {
	c := DefaultConfig()
	c.ApplyDev()
	return c
}

// ApplyDev switches c to dev mode, keeping anything already set explicitly
// by the caller afterwards.
func (c *Config) ApplyDev() {
	c.Dev, c.Server, c.BootstrapExpect = true, true, 1
	c.BindAddr = "127.0.0.1"
	c.HTTPAddr, c.GRPCAddr, c.GRPCTLSAddr, c.GatewayAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	c.DNSAddr = "127.0.0.1:0"
	c.SerfLANPort, c.ServerPort = 0, 0
	c.RetryInterval = time.Second
	c.SyncInterval = 30 * time.Second
}

// Validate reports every problem with c, each naming the flag to fix.
func (c *Config) Validate() error {
	return c.validate(true)
}

// ValidateFiles is Validate for configuration read from files alone (peerd
// validate): -data-dir may still come from the command line, so its absence
// is not an error.
func (c *Config) ValidateFiles() error {
	return c.validate(false)
}

func (c *Config) validate(needDataDir bool) error {
	var errs []error
	if needDataDir && !c.Dev && c.DataDir == "" {
		errs = append(errs, errors.New("-data-dir is required (or use -dev for an in-memory agent)"))
	}
	if c.BootstrapExpect > 0 && !c.Server {
		errs = append(errs, errors.New("-bootstrap-expect needs -server"))
	}
	if c.Dev && c.BootstrapExpect > 1 {
		errs = append(errs, errors.New("-dev runs one server: drop -bootstrap-expect"))
	}
	for _, a := range []struct{ flag, v string }{{"-http-addr", c.HTTPAddr}, {"-grpc-addr", c.GRPCAddr}, {"-grpc-tls-addr", c.GRPCTLSAddr}} {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want host:port, e.g. 127.0.0.1:8500", a.flag, a.v))
		}
	}
	if c.GatewayAddr != "" {
		if _, _, err := net.SplitHostPort(c.GatewayAddr); err != nil {
			errs = append(errs, fmt.Errorf("-gateway-addr %q: want host:port, e.g. 0.0.0.0:8443, or \"\" for no gateway", c.GatewayAddr))
		}
	}
	if c.DNSAddr != "" {
		if _, _, err := net.SplitHostPort(c.DNSAddr); err != nil {
			errs = append(errs, fmt.Errorf("-dns-addr %q: want host:port, e.g. 127.0.0.1:8600, or \"\" for no DNS server", c.DNSAddr))
		}
	}
	if _, err := dns.ParseDomain(c.domain()); err != nil {
		errs = append(errs, fmt.Errorf("-domain: %w", err))
	}
	for _, r := range c.Recursors {
		if _, err := dns.ParseRecursor(r); err != nil {
			errs = append(errs, fmt.Errorf("-recursor: %w", err))
		}
	}
	if _, err := state.ParseVirtualIPRange(c.virtualIPv4CIDR(), 4); err != nil {
		errs = append(errs, fmt.Errorf("-virtual-ip-cidr: %w", err))
	}
	if c.VirtualIPv6CIDR != "" {
		if _, err := state.ParseVirtualIPRange(c.VirtualIPv6CIDR, 6); err != nil {
			errs = append(errs, fmt.Errorf("-virtual-ip6-cidr: %w (or \"\" for IPv4 virtual IPs only)", err))
		}
	}
	if c.VirtualIPGrace < 0 {
		errs = append(errs, fmt.Errorf("virtual IP grace %v: must not be negative", c.VirtualIPGrace))
	}
	if c.ProxyMark < 0 || c.ProxyMark > 0xffffffff {
		errs = append(errs, fmt.Errorf("-proxy-mark %d: want 0 (none) to 4294967295", c.ProxyMark))
	}
	if c.LeafTTL < 10*time.Second {
		errs = append(errs, fmt.Errorf("-leaf-ttl %v: want at least 10s", c.LeafTTL))
	}
	if _, err := c.tlsMinVersion(); err != nil {
		errs = append(errs, err)
	}
	for _, p := range c.GatewayVIPs {
		if _, err := netip.ParsePrefix(p); err != nil {
			errs = append(errs, fmt.Errorf("-gateway-vip %q: want a CIDR prefix such as 203.0.113.0/24: %v", p, err))
		}
	}
	if len(c.GatewayVIPs) > 0 && c.GatewayAddr == "" {
		errs = append(errs, errors.New("-gateway-vip needs the gateway (-gateway-addr)"))
	}
	if c.CgroupPath != "" && (c.TransparentPort < 1 || c.TransparentPort > 65535) {
		errs = append(errs, fmt.Errorf("-transparent-port %d: want a port from 1 to 65535 for the transparent listeners", c.TransparentPort))
	}
	if c.Encrypt != "" {
		if _, err := c.gossipKey(); err != nil {
			errs = append(errs, err)
		}
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "warning", "error", "trace":
	default:
		errs = append(errs, fmt.Errorf("-log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	if c.NodeName != "" && !validNodeName(c.NodeName) {
		errs = append(errs, fmt.Errorf("-node %q: use letters, digits, '-' and '.' (a DNS label), at most 63 characters each part", c.NodeName))
	}
	return errors.Join(errs...)
}

func (c *Config) domain() string {
	if c.Domain == "" {
		return dns.DefaultDomain
	}
	return c.Domain
}

func (c *Config) virtualIPv4CIDR() string {
	if c.VirtualIPv4CIDR == "" {
		return state.DefaultVirtualIPv4Range
	}
	return c.VirtualIPv4CIDR
}

// checkVirtualIPOverlap refuses virtual IP ranges that overlap this node's
// interface networks.
func (c *Config) checkVirtualIPOverlap() error {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return fmt.Errorf("list interface addresses to check the virtual IP ranges: %w", err)
	}
	for _, r := range []struct {
		flag, cidr string
		family     int
	}{{"-virtual-ip-cidr", c.virtualIPv4CIDR(), 4}, {"-virtual-ip6-cidr", c.VirtualIPv6CIDR, 6}} {
		if r.cidr == "" {
			continue
		}
		p, err := state.ParseVirtualIPRange(r.cidr, r.family)
		if err != nil {
			return fmt.Errorf("%s: %w", r.flag, err)
		}
		if err := state.CheckVirtualIPRangeOverlap(p, addrs); err != nil {
			return fmt.Errorf("%s: %w", r.flag, err)
		}
	}
	return nil
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

func (c *Config) gossipKey() ([]byte, error) {
	if c.Encrypt == "" {
		return nil, nil
	}
	k, err := base64.StdEncoding.DecodeString(c.Encrypt)
	if err != nil {
		return nil, fmt.Errorf("-encrypt: not base64: %w (generate one with `peerd keygen`)", err)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf("-encrypt: key is %d bytes, want 16, 24 or 32 (generate one with `peerd keygen`)", len(k))
}

// fileConfig is the schema of an agent config file (HCL or JSON; keys match
// case-insensitively, with or without underscores, as Consul's do).
type fileConfig struct {
	Datacenter       *string
	NodeName         *string
	NodeID           *string
	NodeMeta         map[string]string
	Server           *bool
	BootstrapExpect  *int
	RetryJoin        []string
	RetryInterval    *decode.Duration
	DataDir          *string
	BindAddr         *string
	AdvertiseAddr    *string
	Encrypt          *string
	LeaveOnTerminate *bool
	LogLevel         *string
	LogJSON          *bool
	Domain           *string
	Recursors        []string
	VirtualIPCIDR    *string
	VirtualIP6CIDR   *string
	Ports            *struct {
		HTTP    *int
		GRPC    *int
		GRPCTLS *int
		Gateway *int
		SerfLAN *int
		Server  *int
		DNS     *int
	}
	Addresses *struct {
		HTTP    *string
		GRPC    *string
		GRPCTLS *string
		Gateway *string
		DNS     *string
	}
	Peering *struct {
		HeartbeatInterval *decode.Duration
		HeartbeatTimeout  *decode.Duration
	}
	Service  []*state.ServiceDefinition
	Services []*state.ServiceDefinition
	Check    []*state.CheckType
	Checks   []*state.CheckType
}

// LoadFiles reads config files and directories (every *.hcl and *.json in a
// directory, in name order) into c. Later files override earlier ones;
// services and checks accumulate.
func (c *Config) LoadFiles(paths ...string) error {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("config %s: %w", p, err)
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return fmt.Errorf("read config dir %s: %w", p, err)
		}
		for _, e := range entries {
			ext := filepath.Ext(e.Name())
			if !e.IsDir() && (ext == ".hcl" || ext == ".json") {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
	}
	slices.Sort(files)
	for _, f := range files {
		if err := c.loadFile(f); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) loadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config %s: %w", path, err)
	}
	g, err := decode.Generic(b, path)
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	// A single `"service": {...}` object in JSON means a list of one.
	for k, v := range g {
		if m, ok := v.(map[string]any); ok {
			switch strings.ToLower(strings.ReplaceAll(k, "_", "")) {
			case "service", "services", "check", "checks":
				g[k] = []any{m}
			}
		}
	}
	var fc fileConfig
	if err := decode.Into(g, &fc); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&c.Datacenter, fc.Datacenter)
	set(&c.NodeName, fc.NodeName)
	set(&c.NodeID, fc.NodeID)
	set(&c.DataDir, fc.DataDir)
	set(&c.BindAddr, fc.BindAddr)
	set(&c.AdvertiseAddr, fc.AdvertiseAddr)
	set(&c.Encrypt, fc.Encrypt)
	set(&c.LogLevel, fc.LogLevel)
	set(&c.Domain, fc.Domain)
	set(&c.VirtualIPv4CIDR, fc.VirtualIPCIDR)
	set(&c.VirtualIPv6CIDR, fc.VirtualIP6CIDR)
	if fc.Recursors != nil {
		c.Recursors = fc.Recursors
	}
	if fc.NodeMeta != nil {
		c.NodeMeta = fc.NodeMeta
	}
	if fc.Server != nil {
		c.Server = *fc.Server
	}
	if fc.BootstrapExpect != nil {
		c.BootstrapExpect = *fc.BootstrapExpect
	}
	if fc.RetryJoin != nil {
		c.RetryJoin = fc.RetryJoin
	}
	if fc.RetryInterval != nil {
		c.RetryInterval = fc.RetryInterval.D()
	}
	if fc.LeaveOnTerminate != nil {
		c.LeaveOnTerminate = *fc.LeaveOnTerminate
	}
	if fc.LogJSON != nil {
		c.LogJSON = *fc.LogJSON
	}
	if p := fc.Ports; p != nil {
		if p.HTTP != nil {
			c.HTTPAddr = replacePort(c.HTTPAddr, *p.HTTP)
		}
		if p.GRPC != nil {
			c.GRPCAddr = replacePort(c.GRPCAddr, *p.GRPC)
		}
		if p.GRPCTLS != nil {
			c.GRPCTLSAddr = replacePort(c.GRPCTLSAddr, *p.GRPCTLS)
		}
		if p.Gateway != nil {
			c.GatewayAddr = replacePort(c.GatewayAddr, *p.Gateway)
		}
		if p.SerfLAN != nil {
			c.SerfLANPort = *p.SerfLAN
		}
		if p.Server != nil {
			c.ServerPort = *p.Server
		}
		if p.DNS != nil {
			if *p.DNS < 0 { // Consul's way to turn DNS off
				c.DNSAddr = ""
			} else {
				c.DNSAddr = replacePort(c.DNSAddr, *p.DNS)
			}
		}
	}
	if a := fc.Addresses; a != nil {
		if a.HTTP != nil {
			c.HTTPAddr = replaceHost(c.HTTPAddr, *a.HTTP)
		}
		if a.GRPC != nil {
			c.GRPCAddr = replaceHost(c.GRPCAddr, *a.GRPC)
		}
		if a.GRPCTLS != nil {
			c.GRPCTLSAddr = replaceHost(c.GRPCTLSAddr, *a.GRPCTLS)
		}
		if a.Gateway != nil {
			c.GatewayAddr = replaceHost(c.GatewayAddr, *a.Gateway)
		}
		if a.DNS != nil && c.DNSAddr != "" {
			c.DNSAddr = replaceHost(c.DNSAddr, *a.DNS)
		}
	}
	if p := fc.Peering; p != nil {
		if p.HeartbeatInterval != nil {
			c.PeeringHeartbeatInterval = p.HeartbeatInterval.D()
		}
		if p.HeartbeatTimeout != nil {
			c.PeeringHeartbeatTimeout = p.HeartbeatTimeout.D()
		}
	}
	c.Services = append(c.Services, fc.Service...)
	c.Services = append(c.Services, fc.Services...)
	c.Checks = append(c.Checks, fc.Check...)
	c.Checks = append(c.Checks, fc.Checks...)
	return nil
}

// tlsMinVersion parses ProxyTLSMinVersion.
func (c *Config) tlsMinVersion() (uint16, error) {
	switch c.ProxyTLSMinVersion {
	case "", "1.3":
		return tls.VersionTLS13, nil
	case "1.2":
		return tls.VersionTLS12, nil
	}
	return 0, fmt.Errorf("-proxy-tls-min-version %q: want 1.3 or 1.2", c.ProxyTLSMinVersion)
}

func replacePort(addr string, port int) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, fmt.Sprint(port))
}

func replaceHost(addr, host string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		port = "0"
	}
	return net.JoinHostPort(host, port)
}

// defaultBindAddr picks the host's one private IPv4 address, as Consul does,
// and asks for -bind-addr when there is none or several.
func defaultBindAddr() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", fmt.Errorf("list interface addresses: %w", err)
	}
	var found []string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil || !ipn.IP.IsPrivate() {
			continue
		}
		found = append(found, ipn.IP.String())
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", errors.New("no private IPv4 address found: set -bind-addr")
	}
	return "", fmt.Errorf("several private IPv4 addresses found (%s): choose one with -bind-addr", strings.Join(found, ", "))
}
