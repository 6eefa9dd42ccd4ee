package config

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/decode"
	"github.com/peerd/peerd/peering"
)

// Every field an operator sets is in the table, and the table is consistent:
// one place per setting is only true if nothing lives beside it.
func TestSettingsTable(t *testing.T) {
	covered := map[uintptr]bool{}
	var c Config
	base := reflect.ValueOf(&c).Pointer()
	flags, keys := map[string]bool{}, map[string]bool{}
	for _, s := range settings {
		if s.name == "" || s.ptr == nil {
			t.Errorf("setting %+v: want a name and a field", s)
			continue
		}
		p := reflect.ValueOf(s.ptr(&c))
		covered[p.Pointer()-base] = true
		for what, v := range map[string]any{"default": s.def, "dev value": s.dev} {
			if v != nil && reflect.TypeOf(v) != p.Type().Elem() {
				t.Errorf("setting %s: %s is a %T, the field a %s", s.name, what, v, p.Type().Elem())
			}
		}
		if s.flag {
			if flags[s.name] {
				t.Errorf("flag -%s defined twice", s.name)
			}
			flags[s.name] = true
			if s.usage == "" {
				t.Errorf("flag -%s has no usage", s.name)
			}
		}
		if s.key != "" {
			if k := decode.CanonicalKey(s.key); keys[k] {
				t.Errorf("file key %s defined twice", s.key)
			} else {
				keys[k] = true
			}
		}
	}
	// Set in code only: by the command (Version, and the reload's
	// Sockets, BeforeState and CatchUpBeforeServing) or by tests.
	inCode := map[string]bool{"Version": true, "Timing": true, "Peering": true, "Admission": true, "Proxy": true, "LogOutput": true,
		"Sockets": true, "BeforeState": true, "CatchUpBeforeServing": true}
	rt := reflect.TypeFor[Config]()
	for i := range rt.NumField() {
		f := rt.Field(i)
		if !f.IsExported() || inCode[f.Name] {
			continue
		}
		if !covered[f.Offset] {
			t.Errorf("Config.%s has no setting in the table", f.Name)
		}
	}
}

// The flags and file keys of before the table, every one still there.
func TestFlagsAndKeysKept(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fc := CommandLineConfig()
	for i := range settings {
		if settings[i].flag {
			settings[i].bindFlag(fs, &fc)
		}
	}
	for _, name := range strings.Fields(`dev server bootstrap-expect retry-join retry-interval data-dir datacenter
		node node-id node-meta bind-addr advertise http-addr grpc-addr grpc-tls-addr gateway-addr dns-addr domain
		recursor virtual-ip-cidr virtual-ip6-cidr proxy-mark leaf-ttl proxy-tls-min-version cgroup-path
		allow-root-cgroup transparent-port dataplane-fastpath workload-netns workload-dns-addrs gateway-vip dataplane-interface bpf-pin-dir
		server-port serf-lan-port encrypt peering-heartbeat-interval peering-heartbeat-timeout peering-stale-stream-timeout
		leave-on-terminate log-level log-json reload-drain-timeout`) {
		if fs.Lookup(name) == nil {
			t.Errorf("flag -%s is gone", name)
		}
	}
	for _, key := range strings.Fields(`datacenter node_name node_id node_meta server bootstrap_expect retry_join
		retry_interval data_dir bind_addr advertise_addr encrypt leave_on_terminate log_level log_json domain
		recursors virtual_ip_cidr virtual_ip6_cidr ports.http ports.grpc ports.grpc_tls ports.gateway
		ports.serf_lan ports.server ports.dns addresses.http addresses.grpc addresses.grpc_tls
		addresses.gateway addresses.dns peering.heartbeat_interval peering.heartbeat_timeout peering.stale_stream_timeout service services
		autopilot.server_stabilization_time autopilot.cleanup_dead_servers autopilot.dead_server_reap_time
		autopilot.last_contact_threshold autopilot.max_trailing_logs
		check checks`) {
		found := false
		for _, s := range settings {
			found = found || s.key == key
		}
		if !found {
			t.Errorf("file key %s is gone", key)
		}
	}
}

func TestDefaults(t *testing.T) {
	d := DefaultConfig()
	want := Config{
		Datacenter: "dc1", HTTPAddr: "127.0.0.1:8500", GRPCAddr: ":8502", GRPCTLSAddr: ":8503",
		GatewayAddr: "0.0.0.0:8443", Domain: "peerd.", VirtualIPv4CIDR: state.DefaultVirtualIPv4Range,
		VirtualIPv6CIDR: state.DefaultVirtualIPv6Range, ProxyMark: d.ProxyMark, LeafTTL: 72 * time.Hour,
		ProxyTLSMinVersion: "1.3", TransparentPort: 15001, FastPath: true, WorkloadNetns: true, WorkloadDNSAddrs: "127.0.0.1:53,[::1]:53", SerfLANPort: 8301, ServerPort: 8300,
		RetryInterval: 30 * time.Second, LeaveOnTerminate: true, LogLevel: "info", SyncInterval: time.Minute,
		InternalTLS:        true,
		CleanupDeadServers: true, DeadServerReapTime: 72 * time.Hour, LastContactThreshold: 200 * time.Millisecond,
		MaxTrailingLogs: 250, ReloadDrainTimeout: 30 * time.Second,
		// Room for issue 15's 100,000 instances per peer.
		PeeringQuotas: peering.Quotas{MaxImportedServices: 10_000, MaxImportedInstances: 250_000, MaxInFlightBytes: 64 << 20,
			MaxMessagesPerSecond: 5_000, MessageBurst: 20_000},
		// ACLs on, deny by default: secure outside dev mode.
		ACL: ACLConfig{Enabled: true, DefaultPolicy: "deny", DownPolicy: "extend-cache"},
	}
	if d.ProxyMark == 0 || !reflect.DeepEqual(d, want) {
		t.Errorf("DefaultConfig:\ngot  %+v\nwant %+v", d, want)
	}
	dev := DevConfig()
	want.Dev, want.Server, want.BootstrapExpect, want.BindAddr = true, true, 1, "127.0.0.1"
	want.HTTPAddr, want.GRPCAddr, want.GRPCTLSAddr, want.GatewayAddr, want.DNSAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	want.SerfLANPort, want.ServerPort, want.RetryInterval, want.SyncInterval = 0, 0, time.Second, 30*time.Second
	want.PeeringAllowLocalGateways = true // dev clusters all run on 127.0.0.1
	want.ACL.Enabled = false              // make demo stays zero-config
	if !reflect.DeepEqual(dev, want) {
		t.Errorf("DevConfig:\ngot  %+v\nwant %+v", dev, want)
	}
	if c := CommandLineConfig(); c.DNSAddr != DefaultDNSAddr {
		t.Errorf("CommandLineConfig: DNS on %q, want %q", c.DNSAddr, DefaultDNSAddr)
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Every file key reaches its field; spellings match as Consul's do.
func TestFileKeys(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.hcl": `
Datacenter = "east"
NodeName = "n1"
node_id = "8f1a0b9e-3c1d-4d2e-9f00-000000000001"
node_meta = { rack = "r1" }
server = true
bootstrap_expect = 3
retry_join = ["10.0.0.1", "10.0.0.2"]
retry_interval = "5s"
data_dir = "/var/lib/peerd"
bind_addr = "10.0.0.9"
advertise_addr = "192.0.2.9"
leave_on_terminate = false
log_level = "debug"
LogJSON = true
encrypt = "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE="
insecure_gossip = true
ports {
  http = 9500
  grpc = 9502
  grpc_tls = 9503
  gateway = 9443
  serf_lan = 9301
  server = 9300
  dns = 9600
}
addresses {
  http = "0.0.0.0"
  gateway = "10.0.0.9"
}
peering {
  heartbeat_interval = "10s"
  heartbeat_timeout = "1m"
}
service {
  name = "web"
  port = 80
}
`, "b.json": `{"service": {"name": "api", "port": 81}, "checks": [{"name": "disk", "ttl": "30s"}]}`})
	c := CommandLineConfig()
	if err := c.LoadFiles(dir); err != nil {
		t.Fatal(err)
	}
	got := []any{c.Datacenter, c.NodeName, c.NodeID, c.NodeMeta["rack"], c.Server, c.BootstrapExpect, c.RetryJoin,
		c.RetryInterval, c.DataDir, c.BindAddr, c.AdvertiseAddr, c.LeaveOnTerminate, c.LogLevel, c.LogJSON,
		c.HTTPAddr, c.GRPCAddr, c.GRPCTLSAddr, c.GatewayAddr, c.SerfLANPort, c.ServerPort, c.DNSAddr,
		c.PeeringHeartbeatInterval, c.PeeringHeartbeatTimeout, len(c.Services), len(c.Checks), c.Encrypt, c.InsecureGossip}
	want := []any{"east", "n1", "8f1a0b9e-3c1d-4d2e-9f00-000000000001", "r1", true, 3, []string{"10.0.0.1", "10.0.0.2"},
		5 * time.Second, "/var/lib/peerd", "10.0.0.9", "192.0.2.9", false, "debug", true,
		"0.0.0.0:9500", ":9502", ":9503", "10.0.0.9:9443", 9301, 9300, "127.0.0.1:9600",
		10 * time.Second, time.Minute, 2, 1, "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=", true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("a valid file: %v", err)
	}
}

// The dataplane's settings have file keys in a dataplane block, so a
// systemd install configures it in /etc/peerd.d instead of ExecStart=.
func TestDataplaneFileKeys(t *testing.T) {
	dir := writeFiles(t, map[string]string{"dp.hcl": `
dataplane {
  cgroup_path        = "/sys/fs/cgroup/system.slice/peerd.service"
  allow_root_cgroup  = true
  transparent_port   = 15009
  fastpath           = false
  workload_netns     = false
  workload_dns_addrs = "127.0.0.1:5353"
  gateway_vips       = ["203.0.113.0/24"]
  interfaces         = ["eth0", "eth1"]
  bpf_pin_dir        = "/sys/fs/bpf/peerd-test"
}
`})
	c := CommandLineConfig()
	if err := c.LoadFiles(dir); err != nil {
		t.Fatal(err)
	}
	got := []any{c.CgroupPath, c.AllowRootCgroup, c.TransparentPort, c.FastPath, c.WorkloadNetns, c.WorkloadDNSAddrs,
		c.GatewayVIPs, c.DataplaneInterfaces, c.BPFPinDir}
	want := []any{"/sys/fs/cgroup/system.slice/peerd.service", true, 15009, false, false, "127.0.0.1:5353",
		[]string{"203.0.113.0/24"}, []string{"eth0", "eth1"}, "/sys/fs/bpf/peerd-test"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}

// defaults, then -dev, then files in name order, then flags.
func TestPrecedence(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"10-a.hcl": "datacenter = \"a\"\nlog_level = \"debug\"\nports {\n  http = 9000\n}\n",
		"20-b.hcl": "datacenter = \"b\"\n",
	})
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"files in name order", []string{"-config-dir", dir}, "dc=b log=debug http=127.0.0.1:9000 grpc=:8502"},
		{"dev, then files", []string{"-dev", "-config-dir", dir}, "dc=b log=debug http=127.0.0.1:9000 grpc=127.0.0.1:0"},
		{"flags last", []string{"-config-dir", dir, "-datacenter", "c", "-http-addr", "127.0.0.2:1"}, "dc=c log=debug http=127.0.0.2:1 grpc=:8502"},
		{"a flag given as its default still wins", []string{"-config-dir", dir, "-log-level", "info"}, "dc=b log=info http=127.0.0.1:9000 grpc=:8502"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			got := "dc=" + c.Datacenter + " log=" + c.LogLevel + " http=" + c.HTTPAddr + " grpc=" + c.GRPCAddr
			if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// A flag replaces a file's list and adds to its node metadata.
func TestFlagsOverFileListsAndMeta(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.hcl": "retry_join = [\"f1\"]\nrecursors = [\"1.1.1.1\"]\nnode_meta = { rack = \"r1\", zone = \"z1\" }\n"})
	c, err := Parse([]string{"-config-dir", dir, "-retry-join", "x", "-node-meta", "zone:z2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.RetryJoin, []string{"x"}) || !reflect.DeepEqual(c.Recursors, []string{"1.1.1.1"}) ||
		!reflect.DeepEqual(c.NodeMeta, map[string]string{"rack": "r1", "zone": "z2"}) {
		t.Errorf("got join %v recursors %v meta %v", c.RetryJoin, c.Recursors, c.NodeMeta)
	}
}

// Every problem of every file is reported, each naming its file and key;
// the keys that are fine are applied all the same.
func TestLoadFilesReportsEveryProblem(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a.hcl":  "datacentre = \"x\"\nlog_level = \"debug\"\nbootstrap_expect = \"three\"\n",
		"b.hcl":  "ports {\n  htp = 1\n  http = \"x\"\n}\n",
		"c.hcl":  "service {",
		"d.json": `{"node_name": "a", "NodeName": "b", "server": true}`,
		"e.hcl":  "log_level = 5\n", // a bad value leaves the one before
	})
	c := CommandLineConfig()
	err := c.LoadFiles(dir, filepath.Join(dir, "missing.hcl"))
	for _, want := range []string{
		`a.hcl: datacentre: unknown key; did you mean "datacenter"?`,
		"a.hcl: bootstrap_expect: expected a whole number",
		`b.hcl: ports.htp: unknown key; did you mean "ports.http"?`,
		"b.hcl: ports.http: expected a whole number",
		"c.hcl",
		`d.json: node_name: "NodeName" and "node_name" are the same key`,
		"e.hcl: log_level: expected a string",
		"missing.hcl",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want it to contain %q", err, want)
		}
	}
	if c.LogLevel != "debug" || !c.Server {
		t.Errorf("the good keys were not applied: log %q server %t", c.LogLevel, c.Server)
	}
}

// Validate names the file and key that set a bad value, or else the flag.
func TestValidateNamesWhatToFix(t *testing.T) {
	tests := []struct {
		name, body string
		args       []string
		want       string
	}{
		{"service port", "service {\n  name = \"web\"\n  port = 99999\n}\n", nil, `f.hcl: service[0] "web": Port: 99999 is not between 0 and 65535`},
		{"service check", "service {\n  name = \"web\"\n  check {\n    http = \"http://x\"\n  }\n}\n", nil, `f.hcl: service[0] "web": check "service:web"`},
		{"check without name", "check {\n  ttl = \"10s\"\n}\n", nil, "f.hcl: check[0]"},
		{"datacenter", `datacenter = "DC_9!"`, nil, `f.hcl: datacenter: "DC_9!" is not a datacenter name`},
		{"datacenter flag", "", []string{"-datacenter", "DC_9!"}, `-datacenter: "DC_9!" is not a datacenter name`},
		{"bootstrap without server", "bootstrap_expect = 2", nil, "f.hcl: bootstrap_expect: 2 needs a server: set server = true (-server)"},
		{"negative bootstrap", "server = true\nbootstrap_expect = -1", nil, "f.hcl: bootstrap_expect: -1: must not be negative"},
		{"dev bootstrap", "bootstrap_expect = 3", []string{"-dev"}, "f.hcl: bootstrap_expect: 3: -dev runs one server"},
		{"dev data dir", `data_dir = "/tmp/x"`, []string{"-dev"}, "f.hcl: data_dir: \"/tmp/x\": -dev keeps everything in memory"},
		{"http port", "ports {\n  http = 99999\n}\n", nil, `f.hcl: ports.http: "127.0.0.1:99999": want host:port`},
		{"serf port", "ports {\n  serf_lan = 70000\n}\n", nil, "f.hcl: ports.serf_lan: 70000: want a port"},
		{"bind address", `bind_addr = "eth0"`, nil, `f.hcl: bind_addr: "eth0": not an IP address`},
		{"bind on all without advertise", `bind_addr = "0.0.0.0"`, nil, `f.hcl: bind_addr: "0.0.0.0": other nodes cannot reach`},
		{"advertise", `advertise_addr = "::"`, nil, `f.hcl: advertise_addr: "::": want an IP address`},
		{"heartbeats", "peering {\n  heartbeat_interval = \"5m\"\n}\n", nil, "f.hcl: peering.heartbeat_interval: 5m0s: the heartbeat timeout (2m0s) must be longer"},
		{"negative quota", "peering {\n  max_imported_instances = -1\n}\n", nil, "f.hcl: peering.max_imported_instances: -1: must not be negative"},
		{"negative rate flag", "", []string{"-peering-max-messages-per-second", "-5"}, "-peering-max-messages-per-second: -5: must not be negative"},
		{"log level flag", "", []string{"-log-level", "loud"}, `-log-level: "loud"`},
		{"gossip key", `encrypt = "abc"`, nil, "f.hcl: encrypt: not base64"},
		{"domain", `domain = "."`, nil, "f.hcl: domain: "},
		{"acl default policy", "acl {\n  default_policy = \"maybe\"\n}\n", nil, `f.hcl: acl.default_policy: "maybe": want "deny"`},
		{"acl default policy flag", "", []string{"-acl-default-policy", "maybe"}, `-acl-default-policy: "maybe": want "deny"`},
		{"acl down policy", "acl {\n  down_policy = \"retry\"\n}\n", nil, `f.hcl: acl.down_policy: "retry": want one of extend-cache, async-cache, allow, deny`},
		{"acl token with a space", "acl {\n  tokens {\n    agent = \"abc def\"\n  }\n}\n", nil, "f.hcl: acl.tokens.agent: holds a space"},
		{"acl default token is management", "acl {\n  tokens {\n    initial_management = \"6a1253d2-1785-24fd-91c2-f8e78c745511\"\n    default = \"6a1253d2-1785-24fd-91c2-f8e78c745511\"\n  }\n}\n", nil, "f.hcl: acl.tokens.default: is the initial management token"},
		{"acl initial management not a UUID", "acl {\n  tokens {\n    initial_management = \"root\"\n  }\n}\n", nil, "f.hcl: acl.tokens.initial_management: is not a UUID"},
		{"workload dns address", "", []string{"-cgroup-path", "/sys/fs/cgroup/unified/x", "-workload-dns-addrs", "127.0.0.1:53,localhost:53"}, `-workload-dns-addrs: "localhost:53": "localhost" is not an IP address`},
		{"workload dns port", "", []string{"-cgroup-path", "/sys/fs/cgroup/unified/x", "-workload-dns-addrs", "127.0.0.1"}, `-workload-dns-addrs: "127.0.0.1": want ip:port`},
		{"metrics address", `telemetry { prometheus_addr = "nowhere" }`, nil, `f.hcl: telemetry.prometheus_addr: "nowhere": want host:port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"f.hcl": tt.body})
			args := append([]string{"-data-dir", t.TempDir(), "-config-file", filepath.Join(dir, "f.hcl")}, tt.args...)
			if slices.Contains(tt.args, "-dev") {
				args = append([]string{"-config-file", filepath.Join(dir, "f.hcl")}, tt.args...)
			}
			c, err := Parse(args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// peerd validate's check: all files, then the result; the data directory
// may still come from the command line.
func TestCheck(t *testing.T) {
	good := writeFiles(t, map[string]string{"a.hcl": "server = true\nbootstrap_expect = 3\nencrypt = \"YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=\"\n", "b.hcl": "service {\n  name = \"web\"\n  port = 80\n}\n"})
	if err := Check(good); err != nil {
		t.Errorf("good files: %v", err)
	}
	bad := writeFiles(t, map[string]string{"a.hcl": "datacentre = \"x\"\n", "b.hcl": "datacenter = \"DC_9!\"\n"})
	err := Check(bad)
	for _, want := range []string{"a.hcl: datacentre", "b.hcl: datacenter"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want it to contain %q", err, want)
		}
	}
}

// Without files or flags, messages name the flag, as they always did.
func TestValidateInCodeNamesTheFlag(t *testing.T) {
	c := DevConfig()
	c.HTTPAddr, c.Datacenter = "nope", "a b"
	err := c.Validate()
	for _, want := range []string{`-http-addr: "nope"`, `-datacenter: "a b"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want it to contain %q", err, want)
		}
	}
}

func TestHelpListsTheFlags(t *testing.T) {
	var out bytes.Buffer
	if _, err := Parse([]string{"-h"}, &out); err != flag.ErrHelp {
		t.Fatalf("got %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"-datacenter string", `(default "dc1")`, "-config-file value", "-serf-lan-port int", "(default 8301)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

// Outside -dev an agent needs a gossip key, a keyring file from an earlier
// run, or -insecure-gossip; the refusal says how to get a key.
func TestGossipKeyRequired(t *testing.T) {
	withKeyring := t.TempDir()
	if err := os.WriteFile(filepath.Join(withKeyring, "keyring"), []byte(`["YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE="]`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		refused bool
	}{
		{"no key", []string{"-data-dir", t.TempDir()}, true},
		{"server without key", []string{"-server", "-data-dir", t.TempDir()}, true},
		{"key", []string{"-data-dir", t.TempDir(), "-encrypt", "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE="}, false},
		{"insecure", []string{"-data-dir", t.TempDir(), "-insecure-gossip"}, false},
		{"keyring file of an earlier run", []string{"-data-dir", withKeyring}, false},
		{"dev", []string{"-dev"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Validate()
			if !tt.refused {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if !errors.Is(err, ErrNoGossipKey) {
				t.Fatalf("got %v, want ErrNoGossipKey", err)
			}
			for _, want := range []string{"peerd keygen", "-encrypt", "-insecure-gossip"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("refusal %q does not mention %s", err, want)
				}
			}
		})
	}
}

// A join token may carry the gossip key, so Validate lets a node with one
// through; RequireGossipKey, run once the node is admitted, still refuses a
// node the token gave no key.
func TestRequireGossipKeyAfterAdmission(t *testing.T) {
	c := DefaultConfig()
	c.DataDir, c.JoinToken = t.TempDir(), "a-token"
	if err := c.RequireGossipKey(); !errors.Is(err, ErrNoGossipKey) || !strings.Contains(err.Error(), "join token carries no gossip key") {
		t.Fatalf("got %v, want ErrNoGossipKey naming the join token", err)
	}
	c.Encrypt = "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=" // as the token's key sets it
	if err := c.RequireGossipKey(); err != nil {
		t.Fatalf("got %v with a key", err)
	}
}

// Consul's acl block, tokens nested in it, reaches its fields; a typo in
// the nested block is named with its path; a bad token's message does not
// repeat the secret.
func TestACLBlock(t *testing.T) {
	dir := writeFiles(t, map[string]string{"acl.hcl": `
acl {
  enabled = true
  default_policy = "allow"
  down_policy = "async-cache"
  enable_token_persistence = true
  tokens {
    initial_management = "6a1253d2-1785-24fd-91c2-f8e78c745511"
    agent = "agent-secret"
    default = "dns-secret"
    agent_recovery = "recovery-secret"
  }
}
telemetry {
  prometheus_addr = "10.0.0.5:9102"
}
`})
	c := CommandLineConfig()
	if err := c.LoadFiles(dir); err != nil {
		t.Fatal(err)
	}
	want := ACLConfig{Enabled: true, DefaultPolicy: "allow", DownPolicy: "async-cache", EnableTokenPersistence: true,
		Tokens: ACLTokens{InitialManagement: "6a1253d2-1785-24fd-91c2-f8e78c745511", Agent: "agent-secret", Default: "dns-secret", AgentRecovery: "recovery-secret"}}
	if !reflect.DeepEqual(c.ACL, want) || c.MetricsAddr != "10.0.0.5:9102" {
		t.Errorf("got %+v metrics %q, want %+v", c.ACL, c.MetricsAddr, want)
	}

	typo := writeFiles(t, map[string]string{"t.hcl": "acl {\n  tokens {\n    agnet = \"x\"\n  }\n  enabeld = true\n}\n"})
	c = CommandLineConfig()
	err := c.LoadFiles(typo)
	for _, w := range []string{`acl.tokens.agnet: unknown key; acl.tokens takes initial_management, agent, default, agent_recovery`, `acl.enabeld: unknown key; did you mean "acl.enabled"?`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("got %v, want it to contain %q", err, w)
		}
	}

	c = DefaultConfig()
	c.DataDir, c.InsecureGossip = t.TempDir(), true
	c.ACL.Tokens.Agent = "s3cret with space"
	err = c.Validate()
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("got %v, want an error without the secret", err)
	}

	// -acl-enabled=false turns them off over the default; a dev agent's
	// file turns them on.
	off, err := Parse([]string{"-acl-enabled=false"}, io.Discard)
	if err != nil || off.ACL.Enabled {
		t.Errorf("-acl-enabled=false: got enabled %t, err %v", off.ACL.Enabled, err)
	}
	on := writeFiles(t, map[string]string{"on.hcl": "acl {\n  enabled = true\n}\n"})
	dev, err := Parse([]string{"-dev", "-config-dir", on}, io.Discard)
	if err != nil || !dev.ACL.Enabled || dev.ACL.DefaultPolicy != "deny" {
		t.Errorf("-dev with acl.enabled: got %+v, err %v", dev.ACL, err)
	}
}
