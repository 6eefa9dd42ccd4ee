package agent

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/cmd/peerctl/cli"
	"github.com/peerd/peerd/dataplane"
	"github.com/peerd/peerd/internal/identity"
)

func devAgent(t *testing.T, mod func(*Config)) *Agent {
	t.Helper()
	cfg := DevConfig()
	cfg.NodeName, cfg.LogLevel = "dev1", "error"
	if mod != nil {
		mod(&cfg)
	}
	a, err := startAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	eventually(t, 10*time.Second, "dev agent has a leader", func() error {
		var leader string
		if err := getJSON("http://"+a.HTTPAddr()+"/v1/status/leader", &leader); err != nil || leader == "" {
			return fmt.Errorf("leader %q, %v", leader, err)
		}
		return nil
	})
	return a
}

func TestWriteWithoutLeaderIs503(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test: skipped with -short")
	}
	timing := catalog.FastTiming()
	timing.ApplyTimeout = time.Second
	start := func(name string, join ...string) *Agent {
		cfg := DefaultConfig()
		cfg.NodeName, cfg.Server, cfg.BootstrapExpect, cfg.DataDir = name, true, 2, t.TempDir()
		cfg.Encrypt = testGossipKey
		cfg.InternalTLS = false // two servers bootstrapping together: the plaintext mode
		cfg.ACL.Enabled = false // raft mechanics, no tokens
		cfg.BindAddr, cfg.HTTPAddr, cfg.GRPCAddr, cfg.GRPCTLSAddr = "127.0.0.1", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		cfg.GatewayAddr = "127.0.0.1:0"
		cfg.SerfLANPort, cfg.ServerPort, cfg.LogLevel, cfg.Timing = 0, 0, "error", timing
		cfg.RetryJoin, cfg.RetryInterval = join, 100*time.Millisecond
		a, err := startAgent(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Close(context.Background()) })
		return a
	}
	s1 := start("s1")
	s2 := start("s2", s1.Cluster().GossipAddr())
	eventually(t, 10*time.Second, "leader", func() error {
		if s1.Cluster().IsLeader() || s2.Cluster().IsLeader() {
			return nil
		}
		return fmt.Errorf("no leader")
	})
	_ = s1.Close(context.Background()) // two voters, one left: no quorum
	code, body, err := httpDo("PUT", "http://"+s2.HTTPAddr()+"/v1/config", map[string]any{
		"Kind": "service-defaults", "Name": "web", "Protocol": "http",
	})
	if err != nil {
		t.Fatal(err)
	}
	if code != 503 || !strings.Contains(string(body), "No cluster leader") {
		t.Fatalf("got %d %q, want 503 No cluster leader", code, body)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	a := devAgent(t, nil)
	_, _, _ = httpDo("GET", "http://"+a.HTTPAddr()+"/v1/catalog/services", nil)
	code, body, err := httpDo("GET", "http://"+a.HTTPAddr()+"/metrics", nil)
	if err != nil || code != 200 {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	for _, want := range []string{
		`peerd_raft_state{state="Leader"} 1`,
		"peerd_raft_applied_index",
		`peerd_memberlist_members{status="alive"} 1`,
		`peerd_catalog_rows{table="nodes"} 1`,
		`peerd_http_request_duration_seconds_count{code="200",method="GET",route="GET /v1/catalog/services"}`,
		"peerd_catalog_apply_duration_seconds",
		"go_goroutines",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestConfigDirServicesAreRegistered(t *testing.T) {
	dir := t.TempDir()
	hcl := `
service {
  name = "web"
  port = 8080
  tags = ["v1"]
  check {
    ttl = "30s"
  }
}
services = [{ name = "api", port = 9090 }]
`
	if err := os.WriteFile(filepath.Join(dir, "services.hcl"), []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	js := `{"service": {"name": "db", "port": 5432}, "node_meta": {"rack": "r1"}}`
	if err := os.WriteFile(filepath.Join(dir, "db.json"), []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	a := devAgent(t, func(c *Config) {
		if err := c.LoadFiles(dir); err != nil {
			t.Fatal(err)
		}
	})
	eventually(t, 5*time.Second, "services from config files in the catalog", func() error {
		var svcs map[string][]string
		if err := getJSON("http://"+a.HTTPAddr()+"/v1/catalog/services", &svcs); err != nil {
			return err
		}
		for _, want := range []string{"web", "api", "db"} {
			if _, ok := svcs[want]; !ok {
				return fmt.Errorf("got %v, want %s", svcs, want)
			}
		}
		return nil
	})
	var nodes []struct{ Meta map[string]string }
	if err := getJSON("http://"+a.HTTPAddr()+"/v1/catalog/nodes", &nodes); err != nil || len(nodes) != 1 || nodes[0].Meta["rack"] != "r1" {
		t.Fatalf("got nodes %+v (%v), want node meta rack=r1", nodes, err)
	}
}

func TestConfigFileErrorsNameTheProblem(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, file, body, want string
	}{
		{"unknown key", "a.hcl", `datacentre = "dc1"`, "datacentre"},
		{"wrong type", "b.json", `{"bootstrap_expect": "three"}`, "b.json: bootstrap_expect: expected a whole number"},
		{"broken hcl", "c.hcl", `service {`, "c.hcl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.file)
			if err := os.WriteFile(p, []byte(tt.body), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := DevConfig()
			err := cfg.LoadFiles(p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

// peerctl against a real agent: the CLI's own tests use a recorded fake.
func TestPeerctlAgainstAgent(t *testing.T) {
	a := devAgent(t, nil)
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if err := cli.Run(context.Background(), append([]string{"-http-addr", a.HTTPAddr()}, args...), &out, &errb); err != nil {
			t.Fatalf("peerctl %v: %v\n%s", args, err, errb.String())
		}
		return out.String()
	}
	dir := t.TempDir()
	svc := filepath.Join(dir, "web.hcl")
	if err := os.WriteFile(svc, []byte("service {\n  name = \"web\"\n  port = 8080\n  tags = [\"v1\"]\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	entry := filepath.Join(dir, "exports.hcl")
	if err := os.WriteFile(entry, []byte(`Kind = "exported-services"
Name = "default"
Services = [{ Name = "web", Consumers = [{ Peer = "cluster-b" }] }]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"services", "register", svc}, "Registered service: web"},
		{[]string{"members"}, "dev1"},
		{[]string{"catalog", "services", "-tags"}, "v1"},
		{[]string{"catalog", "nodes"}, "dev1"},
		{[]string{"config", "write", entry}, "Config entry written: exported-services/default"},
		{[]string{"config", "read", "-kind", "exported-services", "-name", "default"}, `"Peer": "cluster-b"`},
		{[]string{"config", "list", "-kind", "exported-services", "-format", "json"}, `"Name": "default"`},
		{[]string{"config", "delete", "-kind", "exported-services", "-name", "default"}, "Config entry deleted"},
		{[]string{"services", "deregister", "-id", "web"}, "Deregistered service: web"},
		{[]string{"ca", "roots"}, ".peerd"},
		{[]string{"ca", "rotate"}, "New active root: "},
		{[]string{"ca", "roots", "-format", "json"}, `"IntermediateCerts"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[:min(2, len(tt.args))], " "), func(t *testing.T) {
			if got := run(t, tt.args...); !strings.Contains(got, tt.want) {
				t.Fatalf("got %q, want it to contain %q", got, tt.want)
			}
		})
	}
	var out, errb bytes.Buffer
	bad := filepath.Join(dir, "bad.hcl")
	_ = os.WriteFile(bad, []byte(`Kind = "exported-services"
Name = "default"
Services = [{ Name = "web", Consumers = [{ Peer = "b", Partition = "p" }] }]
`), 0o600)
	err := cli.Run(context.Background(), []string{"-http-addr", a.HTTPAddr(), "config", "write", bad}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "Consumers[0]") {
		t.Fatalf("got %v, want a 400 naming Services[0].Consumers[0]", err)
	}
}

// TestGRPCHealthNamesServedServices checks that the gRPC health service
// answers for the name of every service the agent's gRPC servers serve (a
// Kubernetes probe may name one), and NotFound for others.
// The internal port is mutual TLS (a dev agent has cluster trust): the
// check is made with the node's own certificate, and a plaintext one is
// refused.
func TestGRPCHealthNamesServedServices(t *testing.T) {
	a := devAgent(t, nil)
	plain, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
	if _, err := healthpb.NewHealthClient(plain).Check(pctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Error("a plaintext call on the internal port was answered")
	}
	pcancel()
	conn, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(
		credentials.NewTLS(a.trust.source.ClientConfig("grpc", identity.RoleServer))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	names := []string{"", "grpc.health.v1.Health"}
	for _, srv := range []*grpc.Server{a.grpc, a.grpcTLS} {
		if srv != nil {
			for name := range srv.GetServiceInfo() {
				names = append(names, name)
			}
		}
	}
	if len(names) < 5 {
		t.Fatalf("served services: got %v, want the catalog's, peering's and the stream's too", names)
	}
	for _, name := range names {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: name})
		cancel()
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q): got %v, %v; want SERVING", name, resp.GetStatus(), err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.Service"}); status.Code(err) != codes.NotFound {
		t.Errorf("Check of an unknown service: got %v, want NotFound", err)
	}
}

func TestBannerDataplaneLine(t *testing.T) {
	a := devAgent(t, nil)
	var b bytes.Buffer
	a.PrintBanner(&b)
	if want := " dataplane: off (no -cgroup-path, -dataplane-interface or -gateway-vip)\n"; !strings.Contains(b.String(), want) {
		t.Errorf("banner lacks %q:\n%s", want, b.String())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	st := dataplane.Status{PinDir: "/sys/fs/bpf/peerd",
		Capture:  dataplane.LayerStatus{Enabled: true, Loaded: true},
		FastPath: dataplane.LayerStatus{Enabled: true, Reason: "no SOCKHASH"},
		TC:       dataplane.LayerStatus{Enabled: true, Loaded: true, Reused: true}}
	for _, tt := range []struct {
		dev  bool
		want string
	}{
		{true, fmt.Sprintf("capture loaded, fastpath OFF: no SOCKHASH, tc loaded (reused pins); transparent port %d; pins /sys/fs/bpf/peerd (removed on exit)", port)},
		{false, fmt.Sprintf("capture loaded, fastpath OFF: no SOCKHASH, tc loaded (reused pins); transparent port %d; pins /sys/fs/bpf/peerd", port)},
	} {
		if got := dataplaneSummary(st, []net.Listener{ln}, tt.dev); got != tt.want {
			t.Errorf("dev %t: got %q, want %q", tt.dev, got, tt.want)
		}
	}
}

// startAgent is New followed by Start.
func startAgent(cfg Config) (*Agent, error) {
	a, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := a.Start(); err != nil {
		return nil, err
	}
	return a, nil
}
