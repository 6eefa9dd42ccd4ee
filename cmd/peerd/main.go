// Command peerd is the peerd node daemon: `peerd agent` runs a node,
// `peerd keygen` makes a gossip encryption key, `peerd version` prints the
// version. Flags become an agent.Config; internal/agent does the rest.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/peerd/peerd/internal/agent"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `Usage: peerd <command> [flags]

Commands:
  agent     run a peerd node (peerd agent -dev for a single-node cluster in memory)
  keygen    print a new gossip encryption key for -encrypt
  validate  check config files or directories without starting an agent
  dataplane cleanup [-bpf-pin-dir DIR]
            detach and remove every eBPF object peerd pinned (default /sys/fs/bpf/peerd)
  version   print the version

Run 'peerd agent -h' for the agent's flags.
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "peerd:", err)
		}
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing command")
	}
	switch args[0] {
	case "agent":
		cfg, err := parseAgentFlags(args[1:], stderr)
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return agent.Run(ctx, cfg, stdout)
	case "keygen":
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return fmt.Errorf("generate key: %w", err)
		}
		fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(key))
		return nil
	case "validate":
		if len(args) < 2 {
			return errors.New("validate: name at least one config file or directory")
		}
		cfg := defaultConfig()
		if err := cfg.LoadFiles(args[1:]...); err != nil {
			return err
		}
		if err := cfg.ValidateFiles(); err != nil {
			return fmt.Errorf("invalid configuration:\n%w", err)
		}
		fmt.Fprintln(stdout, "Configuration is valid!")
		return nil
	case "dataplane":
		if len(args) < 2 || args[1] != "cleanup" {
			return errors.New("dataplane: the only subcommand is cleanup (peerd dataplane cleanup [-bpf-pin-dir DIR])")
		}
		fs := flag.NewFlagSet("peerd dataplane cleanup", flag.ContinueOnError)
		fs.SetOutput(stderr)
		dir := fs.String("bpf-pin-dir", "", "bpffs directory of the pins (default /sys/fs/bpf/peerd)")
		if err := fs.Parse(args[2:]); err != nil {
			return err
		}
		if err := agent.CleanupDataplane(*dir); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "Dataplane removed: no program, map or link of peerd is left pinned or attached.")
		return nil
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "peerd %s\n", version)
		return nil
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// defaultConfig is the agent's configuration before files and flags: the
// library's defaults plus the DNS server on Consul's port.
func defaultConfig() agent.Config {
	c := agent.DefaultConfig()
	c.DNSAddr = agent.DefaultDNSAddr
	return c
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// parseAgentFlags turns the agent's flags into a Config. Config files load
// first; flags given on the command line override them; -dev picks free
// loopback ports for every listener not given explicitly.
func parseAgentFlags(args []string, stderr io.Writer) (agent.Config, error) {
	fs := flag.NewFlagSet("peerd agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := defaultConfig()
	var (
		f               = def
		retryJoin       listFlag
		recursors       listFlag
		configs         listFlag
		nodeMeta        listFlag
		dataplaneIfaces listFlag
		gatewayVIPs     listFlag
		serfPort        = fs.Int("serf-lan-port", def.SerfLANPort, "gossip (memberlist) port, TCP and UDP")
	)
	fs.BoolVar(&f.Dev, "dev", false, "run a complete single-node cluster in memory; free loopback ports unless given")
	fs.BoolVar(&f.Server, "server", false, "run as a server: hold the replicated state (raft voter)")
	fs.IntVar(&f.BootstrapExpect, "bootstrap-expect", 0, "servers to wait for before electing the first leader (1, 3 or 5)")
	fs.Var(&retryJoin, "retry-join", "gossip address of a node to join, retried until it answers (repeatable)")
	fs.DurationVar(&f.RetryInterval, "retry-interval", def.RetryInterval, "time between -retry-join attempts")
	fs.StringVar(&f.DataDir, "data-dir", "", "directory for raft data, the node ID and registered services")
	fs.StringVar(&f.Datacenter, "datacenter", def.Datacenter, "datacenter (cluster) name")
	fs.StringVar(&f.NodeName, "node", "", "node name (default: host name)")
	fs.StringVar(&f.NodeID, "node-id", "", "node UUID (default: generated and kept in -data-dir)")
	fs.Var(&nodeMeta, "node-meta", "node metadata key:value (repeatable)")
	fs.StringVar(&f.BindAddr, "bind-addr", "", "IP for gossip and raft (default: the host's private IPv4; 127.0.0.1 with -dev)")
	fs.StringVar(&f.AdvertiseAddr, "advertise", "", "IP other nodes reach this one at (default: -bind-addr)")
	fs.StringVar(&f.HTTPAddr, "http-addr", def.HTTPAddr, "HTTP API address host:port (port 0 = free port)")
	fs.StringVar(&f.GRPCAddr, "grpc-addr", def.GRPCAddr, "internal gRPC address host:port (port 0 = free port)")
	fs.StringVar(&f.GRPCTLSAddr, "grpc-tls-addr", def.GRPCTLSAddr, "TLS gRPC address peers dial for the peering stream (servers; port 0 = free port)")
	fs.StringVar(&f.GatewayAddr, "gateway-addr", def.GatewayAddr, "the node's mTLS gateway for peers and other nodes, host:port (port 0 = free port; \"\" = none)")
	fs.StringVar(&f.DNSAddr, "dns-addr", def.DNSAddr, "DNS server address host:port, UDP and TCP (port 0 = free port; \"\" = none)")
	fs.StringVar(&f.Domain, "domain", def.Domain, "DNS domain answered from the catalog")
	fs.Var(&recursors, "recursor", "DNS server (IP[:port]) names outside -domain are forwarded to (repeatable)")
	fs.StringVar(&f.VirtualIPv4CIDR, "virtual-ip-cidr", def.VirtualIPv4CIDR, "range imported services' virtual IPv4 addresses are taken from")
	fs.StringVar(&f.VirtualIPv6CIDR, "virtual-ip6-cidr", def.VirtualIPv6CIDR, "range of their virtual IPv6 addresses (\"\" = IPv4 only)")
	fs.IntVar(&f.ProxyMark, "proxy-mark", def.ProxyMark, "SO_MARK of the terminator's sockets, so the eBPF layer skips them (0 = none; needs CAP_NET_ADMIN)")
	fs.DurationVar(&f.LeafTTL, "leaf-ttl", def.LeafTTL, "lifetime of the terminator's leaf certificates (renewed at half life)")
	fs.StringVar(&f.ProxyTLSMinVersion, "proxy-tls-min-version", def.ProxyTLSMinVersion, "lowest TLS version of the terminator: 1.3 or 1.2")
	fs.StringVar(&f.CgroupPath, "cgroup-path", "", "cgroup v2 directory whose processes' connections to virtual IPs are captured (eBPF; \"\" = no capture)")
	fs.BoolVar(&f.AllowRootCgroup, "allow-root-cgroup", false, "allow -cgroup-path to be the root of the cgroup hierarchy (every process of the host)")
	fs.IntVar(&f.TransparentPort, "transparent-port", def.TransparentPort, "port of the terminator's transparent listeners on 127.0.0.1 and ::1")
	fs.BoolVar(&f.FastPath, "dataplane-fastpath", def.FastPath, "sockmap fast path for the plaintext loopback legs (with -cgroup-path)")
	fs.Var(&gatewayVIPs, "gateway-vip", "CIDR of addresses that reach this node's gateway through the inbound capture layer (sk_lookup; repeatable)")
	fs.Var(&dataplaneIfaces, "dataplane-interface", "interface to attach the TC per-peer counters to (repeatable)")
	fs.StringVar(&f.BPFPinDir, "bpf-pin-dir", "", "bpffs directory for the dataplane's pins (default /sys/fs/bpf/peerd)")
	fs.IntVar(&f.ServerPort, "server-port", def.ServerPort, "raft port of a server")
	fs.Var(&configs, "config-dir", "directory of *.hcl/*.json config files, incl. service definitions (repeatable)")
	fs.Var(&configs, "config-file", "one config file (repeatable)")
	fs.StringVar(&f.Encrypt, "encrypt", "", "base64 gossip encryption key (peerd keygen)")
	fs.DurationVar(&f.PeeringHeartbeatInterval, "peering-heartbeat-interval", 0, "heartbeat period of peering streams (default 15s)")
	fs.DurationVar(&f.PeeringHeartbeatTimeout, "peering-heartbeat-timeout", 0, "a peering with no heartbeat for this long is FAILING and redialed (default 2m)")
	fs.BoolVar(&f.LeaveOnTerminate, "leave-on-terminate", true, "leave the pool on SIGINT/SIGTERM")
	fs.StringVar(&f.LogLevel, "log-level", def.LogLevel, "debug, info, warn or error")
	fs.BoolVar(&f.LogJSON, "log-json", false, "log JSON lines instead of text")
	if err := fs.Parse(args); err != nil {
		return agent.Config{}, err
	}
	if fs.NArg() > 0 {
		return agent.Config{}, fmt.Errorf("unexpected argument %q: flags start with '-'", fs.Arg(0))
	}
	f.SerfLANPort = *serfPort

	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })

	cfg := defaultConfig()
	if f.Dev {
		cfg.ApplyDev()
	}
	if err := cfg.LoadFiles(configs...); err != nil {
		return agent.Config{}, err
	}
	// Flags given on the command line win over files and dev defaults.
	override := map[string]func(){
		"server":                     func() { cfg.Server = f.Server },
		"bootstrap-expect":           func() { cfg.BootstrapExpect = f.BootstrapExpect },
		"retry-interval":             func() { cfg.RetryInterval = f.RetryInterval },
		"data-dir":                   func() { cfg.DataDir = f.DataDir },
		"datacenter":                 func() { cfg.Datacenter = f.Datacenter },
		"node":                       func() { cfg.NodeName = f.NodeName },
		"node-id":                    func() { cfg.NodeID = f.NodeID },
		"bind-addr":                  func() { cfg.BindAddr = f.BindAddr },
		"advertise":                  func() { cfg.AdvertiseAddr = f.AdvertiseAddr },
		"http-addr":                  func() { cfg.HTTPAddr = f.HTTPAddr },
		"grpc-addr":                  func() { cfg.GRPCAddr = f.GRPCAddr },
		"grpc-tls-addr":              func() { cfg.GRPCTLSAddr = f.GRPCTLSAddr },
		"server-port":                func() { cfg.ServerPort = f.ServerPort },
		"cgroup-path":                func() { cfg.CgroupPath = f.CgroupPath },
		"allow-root-cgroup":          func() { cfg.AllowRootCgroup = f.AllowRootCgroup },
		"transparent-port":           func() { cfg.TransparentPort = f.TransparentPort },
		"dataplane-fastpath":         func() { cfg.FastPath = f.FastPath },
		"bpf-pin-dir":                func() { cfg.BPFPinDir = f.BPFPinDir },
		"gateway-addr":               func() { cfg.GatewayAddr = f.GatewayAddr },
		"dns-addr":                   func() { cfg.DNSAddr = f.DNSAddr },
		"domain":                     func() { cfg.Domain = f.Domain },
		"virtual-ip-cidr":            func() { cfg.VirtualIPv4CIDR = f.VirtualIPv4CIDR },
		"virtual-ip6-cidr":           func() { cfg.VirtualIPv6CIDR = f.VirtualIPv6CIDR },
		"proxy-mark":                 func() { cfg.ProxyMark = f.ProxyMark },
		"leaf-ttl":                   func() { cfg.LeafTTL = f.LeafTTL },
		"proxy-tls-min-version":      func() { cfg.ProxyTLSMinVersion = f.ProxyTLSMinVersion },
		"serf-lan-port":              func() { cfg.SerfLANPort = f.SerfLANPort },
		"encrypt":                    func() { cfg.Encrypt = f.Encrypt },
		"peering-heartbeat-interval": func() { cfg.PeeringHeartbeatInterval = f.PeeringHeartbeatInterval },
		"peering-heartbeat-timeout":  func() { cfg.PeeringHeartbeatTimeout = f.PeeringHeartbeatTimeout },
		"leave-on-terminate":         func() { cfg.LeaveOnTerminate = f.LeaveOnTerminate },
		"log-level":                  func() { cfg.LogLevel = f.LogLevel },
		"log-json":                   func() { cfg.LogJSON = f.LogJSON },
	}
	for name, apply := range override {
		if set[name] {
			apply()
		}
	}
	if len(retryJoin) > 0 {
		cfg.RetryJoin = retryJoin
	}
	if len(dataplaneIfaces) > 0 {
		cfg.DataplaneInterfaces = dataplaneIfaces
	}
	if len(gatewayVIPs) > 0 {
		cfg.GatewayVIPs = gatewayVIPs
	}
	if len(recursors) > 0 {
		cfg.Recursors = recursors
	}
	for _, kv := range nodeMeta {
		k, v, ok := strings.Cut(kv, ":")
		if !ok || k == "" {
			return agent.Config{}, fmt.Errorf("-node-meta %q: use key:value", kv)
		}
		if cfg.NodeMeta == nil {
			cfg.NodeMeta = map[string]string{}
		}
		cfg.NodeMeta[k] = v
	}
	if cfg.Dev && cfg.DataDir != "" {
		return agent.Config{}, errors.New("-dev keeps everything in memory: drop -data-dir")
	}
	cfg.Version = version
	return cfg, nil
}
