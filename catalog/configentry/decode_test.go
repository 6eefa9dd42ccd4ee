package configentry

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/internal/decode"
)

// Consul's documented examples, in HCL (as the docs write it, including HCL 1
// style nested blocks) and JSON.
var documentedExamples = []struct {
	name string
	hcl  string
	json string
	want Entry
}{
	{
		name: "exported-services",
		hcl: `
Kind = "exported-services"
Name = "default"
Services = [
  {
    Name = "web"
    Consumers = [
      {
        Peer = "cluster-02"
      },
      {
        Partition = "team-b"
      },
    ]
  },
  {
    Name      = "*"
    Namespace = "*"
    Consumers = [{ SamenessGroup = "product-group" }]
  }
]
`,
		json: `{
  "Kind": "exported-services",
  "Name": "default",
  "Services": [
    {"Name": "web", "Consumers": [{"Peer": "cluster-02"}, {"Partition": "team-b"}]},
    {"Name": "*", "Namespace": "*", "Consumers": [{"SamenessGroup": "product-group"}]}
  ]
}`,
		want: &ExportedServicesConfigEntry{Kind: ExportedServices, Name: "default", Services: []ExportedService{
			{Name: "web", Consumers: []ServiceConsumer{{Peer: "cluster-02"}, {Partition: "team-b"}}},
			{Name: "*", Namespace: "*", Consumers: []ServiceConsumer{{SamenessGroup: "product-group"}}},
		}},
	},
	{
		name: "service-intentions with a peer",
		hcl: `
Kind = "service-intentions"
Name = "backend-service"
Sources = [
  {
    Name   = "frontend-service"
    Peer   = "cluster-02"
    Action = "allow"
  },
  {
    Name = "admin"
    Permissions = [
      {
        Action = "allow"
        HTTP {
          PathPrefix = "/admin"
          Methods    = ["get", "POST"]
          Header = [
            { Name = "x-user", Present = true },
          ]
        }
      }
    ]
  },
  {
    Name   = "*"
    Action = "deny"
  }
]
`,
		json: `{
  "Kind": "service-intentions",
  "Name": "backend-service",
  "Sources": [
    {"Name": "frontend-service", "Peer": "cluster-02", "Action": "allow"},
    {"Name": "admin", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/admin", "Methods": ["get", "POST"], "Header": [{"Name": "x-user", "Present": true}]}}]},
    {"Name": "*", "Action": "deny"}
  ]
}`,
		want: &ServiceIntentionsConfigEntry{Kind: ServiceIntentions, Name: "backend-service", Sources: []*SourceIntention{
			{Name: "frontend-service", Peer: "cluster-02", Action: "allow", Precedence: 9, Type: "consul"},
			{Name: "admin", Precedence: 9, Type: "consul", Permissions: []*IntentionPermission{{Action: "allow", HTTP: &IntentionHTTPPermission{
				PathPrefix: "/admin", Methods: []string{"GET", "POST"}, Header: []IntentionHTTPHeaderPermission{{Name: "x-user", Present: true}},
			}}}},
			{Name: "*", Action: "deny", Precedence: 8, Type: "consul"},
		}},
	},
	{
		name: "service-router with PathPrefix",
		hcl: `
Kind = "service-router"
Name = "web"
Routes = [
  {
    Match {
      HTTP {
        PathPrefix = "/admin"
      }
    }

    Destination {
      Service = "admin"
      PrefixRewrite = "/"
      RequestTimeout = "15s"
      NumRetries = 3
      RetryOnStatusCodes = [503]
    }
  },
  {
    Match {
      HTTP {
        Header = [
          {
            Name  = "x-debug"
            Exact = "1"
          },
        ]
      }
    }
    Destination {
      Service       = "web"
      ServiceSubset = "canary"
    }
  },
  # NOTE: a default catch-all will send unmatched traffic to "web"
]
`,
		json: `{
  "Kind": "service-router",
  "Name": "web",
  "Routes": [
    {"Match": {"HTTP": {"PathPrefix": "/admin"}},
     "Destination": {"Service": "admin", "PrefixRewrite": "/", "RequestTimeout": "15s", "NumRetries": 3, "RetryOnStatusCodes": [503]}},
    {"Match": {"HTTP": {"Header": [{"Name": "x-debug", "Exact": "1"}]}},
     "Destination": {"Service": "web", "ServiceSubset": "canary"}}
  ]
}`,
		want: &ServiceRouterConfigEntry{Kind: ServiceRouter, Name: "web", Routes: []ServiceRoute{
			{Match: &ServiceRouteMatch{HTTP: &ServiceRouteHTTPMatch{PathPrefix: "/admin"}},
				Destination: &ServiceRouteDestination{Service: "admin", PrefixRewrite: "/", RequestTimeout: decode.Duration(15 * time.Second), NumRetries: 3, RetryOnStatusCodes: []uint32{503}}},
			{Match: &ServiceRouteMatch{HTTP: &ServiceRouteHTTPMatch{Header: []ServiceRouteHTTPMatchHeader{{Name: "x-debug", Exact: "1"}}}},
				Destination: &ServiceRouteDestination{Service: "web", ServiceSubset: "canary"}},
		}},
	},
	{
		name: "service-splitter",
		hcl: `
Kind = "service-splitter"
Name = "web"
Splits = [
  {
    Weight        = 90
    ServiceSubset = "v1"
  },
  {
    Weight        = 10
    ServiceSubset = "v2"
    RequestHeaders {
      Set {
        "x-web-version" = "from-v2"
      }
    }
  },
]
`,
		json: `{
  "Kind": "service-splitter",
  "Name": "web",
  "Splits": [
    {"Weight": 90, "ServiceSubset": "v1"},
    {"Weight": 10, "ServiceSubset": "v2", "RequestHeaders": {"Set": {"x-web-version": "from-v2"}}}
  ]
}`,
		want: &ServiceSplitterConfigEntry{Kind: ServiceSplitter, Name: "web", Splits: []ServiceSplit{
			{Weight: 90, ServiceSubset: "v1"},
			{Weight: 10, ServiceSubset: "v2", RequestHeaders: &HTTPHeaderModifiers{Set: map[string]string{"x-web-version": "from-v2"}}},
		}},
	},
	{
		name: "service-resolver with failover to a peer",
		hcl: `
Kind           = "service-resolver"
Name           = "web"
ConnectTimeout = "15s"
DefaultSubset  = "v1"
Subsets = {
  "v1" = {
    Filter = "Service.Meta.version == v1"
  }
  "v2" = {
    Filter      = "Service.Meta.version == v2"
    OnlyPassing = true
  }
}
Failover = {
  "*" = {
    Targets = [
      {Peer = "cluster-01"},
      {Peer = "cluster-02", Service = "web-dr"},
    ]
  }
}
`,
		json: `{
  "Kind": "service-resolver",
  "Name": "web",
  "ConnectTimeout": "15s",
  "DefaultSubset": "v1",
  "Subsets": {
    "v1": {"Filter": "Service.Meta.version == v1"},
    "v2": {"Filter": "Service.Meta.version == v2", "OnlyPassing": true}
  },
  "Failover": {"*": {"Targets": [{"Peer": "cluster-01"}, {"Peer": "cluster-02", "Service": "web-dr"}]}}
}`,
		want: &ServiceResolverConfigEntry{Kind: ServiceResolver, Name: "web", ConnectTimeout: decode.Duration(15 * time.Second), DefaultSubset: "v1",
			Subsets: map[string]ServiceResolverSubset{
				"v1": {Filter: "Service.Meta.version == v1"},
				"v2": {Filter: "Service.Meta.version == v2", OnlyPassing: true},
			},
			Failover: map[string]ServiceResolverFailover{"*": {Targets: []ServiceResolverFailoverTarget{{Peer: "cluster-01"}, {Peer: "cluster-02", Service: "web-dr"}}}},
		},
	},
	{
		name: "service-defaults with protocol http",
		hcl: `
Kind     = "service-defaults"
Name     = "web"
Protocol = "HTTP"
MeshGateway {
  Mode = "local"
}
UpstreamConfig {
  Overrides = [
    {
      Name = "db"
      Peer = "cluster-02"
      ConnectTimeoutMs = 2000
    }
  ]
  Defaults {
    Protocol = "tcp"
    PassiveHealthCheck {
      Interval    = "10s"
      MaxFailures = 5
    }
  }
}
`,
		json: `{
  "Kind": "service-defaults",
  "Name": "web",
  "Protocol": "HTTP",
  "MeshGateway": {"Mode": "local"},
  "UpstreamConfig": {
    "Overrides": [{"Name": "db", "Peer": "cluster-02", "ConnectTimeoutMs": 2000}],
    "Defaults": {"Protocol": "tcp", "PassiveHealthCheck": {"Interval": 10000000000, "MaxFailures": 5}}
  }
}`,
		want: &ServiceConfigEntry{Kind: ServiceDefaults, Name: "web", Protocol: "http", MeshGateway: MeshGatewayConfig{Mode: "local"},
			UpstreamConfig: &UpstreamConfiguration{
				Overrides: []*UpstreamConfig{{Name: "db", Peer: "cluster-02", ConnectTimeoutMs: 2000}},
				Defaults:  &UpstreamConfig{Protocol: "tcp", PassiveHealthCheck: &PassiveHealthCheck{Interval: decode.DurationNanos(10 * time.Second), MaxFailures: 5}},
			}},
	},
	{
		name: "proxy-defaults with Config protocol",
		hcl: `
Kind = "proxy-defaults"
Name = "global"
Config {
  protocol = "http"
  local_connect_timeout_ms = 1000
}
MeshGateway {
  Mode = "local"
}
`,
		json: `{
  "Kind": "proxy-defaults",
  "Name": "global",
  "Config": {"protocol": "http", "local_connect_timeout_ms": 1000},
  "MeshGateway": {"Mode": "local"}
}`,
		want: &ProxyConfigEntry{Kind: ProxyDefaults, Name: "global",
			Config:      map[string]any{"protocol": "http", "local_connect_timeout_ms": json.Number("1000")},
			MeshGateway: MeshGatewayConfig{Mode: "local"}},
	},
	{
		name: "mesh with peering through mesh gateways",
		hcl: `
Kind = "mesh"
Peering {
  PeerThroughMeshGateways = true
}
TransparentProxy {
  MeshDestinationsOnly = true
}
`,
		json: `{"Kind": "mesh", "Peering": {"PeerThroughMeshGateways": true}, "TransparentProxy": {"MeshDestinationsOnly": true}}`,
		want: &MeshConfigEntry{Kind: MeshConfig, Name: "mesh", Peering: &PeeringMeshConfig{PeerThroughMeshGateways: true},
			TransparentProxy: TransparentProxyMeshConfig{MeshDestinationsOnly: true}},
	},
}

func TestDecodeDocumentedExamples(t *testing.T) {
	for _, tt := range documentedExamples {
		for _, format := range []struct{ name, doc, file string }{{"hcl", tt.hcl, "entry.hcl"}, {"json", tt.json, "entry.json"}} {
			t.Run(tt.name+"/"+format.name, func(t *testing.T) {
				got, err := Decode([]byte(format.doc), format.file)
				if err != nil {
					t.Fatalf("Decode: got error %v, want nil", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					gb, _ := json.Marshal(got)
					wb, _ := json.Marshal(tt.want)
					t.Fatalf("got %s, want %s", gb, wb)
				}
				if err := got.Validate(); err != nil {
					t.Errorf("Validate: got error %v, want nil", err)
				}
				if got.GetKind() != tt.want.GetKind() || got.GetName() != tt.want.GetName() {
					t.Errorf("got kind/name %s/%s, want %s/%s", got.GetKind(), got.GetName(), tt.want.GetKind(), tt.want.GetName())
				}
			})
		}
	}
}

func TestDecodeSnakeCase(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want Entry
	}{
		{
			name: "hcl resolver",
			doc: `
kind            = "service-resolver"
name            = "web"
default_subset  = "v1"
connect_timeout = "15s"
subsets = { v1 = { filter = "Service.Meta.version == v1", only_passing = true } }
failover = { "*" = { targets = [{ peer = "cluster-01", service_subset = "" }] } }
load_balancer = {
  policy           = "ring_hash"
  ring_hash_config = { minimum_ring_size = 1024 }
  hash_policies    = [{ field = "header", field_value = "x-user-id" }]
}
meta = { Owner_Team = "payments" }
`,
			want: &ServiceResolverConfigEntry{Kind: ServiceResolver, Name: "web", DefaultSubset: "v1", ConnectTimeout: decode.Duration(15 * time.Second),
				Subsets:  map[string]ServiceResolverSubset{"v1": {Filter: "Service.Meta.version == v1", OnlyPassing: true}},
				Failover: map[string]ServiceResolverFailover{"*": {Targets: []ServiceResolverFailoverTarget{{Peer: "cluster-01"}}}},
				LoadBalancer: &LoadBalancer{Policy: "ring_hash", RingHashConfig: &RingHashConfig{MinimumRingSize: 1024},
					HashPolicies: []HashPolicy{{Field: "header", FieldValue: "x-user-id"}}},
				Meta: map[string]string{"Owner_Team": "payments"},
			},
		},
		{
			name: "json exported-services with peer_name",
			doc:  `{"kind":"exported-services","name":"default","services":[{"name":"web","consumers":[{"peer_name":"west"},{"sameness_group":"sg"}]}]}`,
			want: &ExportedServicesConfigEntry{Kind: ExportedServices, Name: "default", Services: []ExportedService{
				{Name: "web", Consumers: []ServiceConsumer{{Peer: "west"}, {SamenessGroup: "sg"}}},
			}},
		},
		{
			name: "json service-defaults",
			doc:  `{"Kind":"service-defaults","Name":"web","mesh_gateway":{"mode":"remote"},"transparent_proxy":{"outbound_listener_port":15001,"dialed_directly":true},"max_inbound_connections":10,"balance_inbound_connections":"exact_balance"}`,
			want: &ServiceConfigEntry{Kind: ServiceDefaults, Name: "web", MeshGateway: MeshGatewayConfig{Mode: "remote"},
				TransparentProxy: &TransparentProxyConfig{OutboundListenerPort: 15001, DialedDirectly: true}, MaxInboundConnections: 10, BalanceInboundConnections: "exact_balance"},
		},
		{
			name: "hcl mesh",
			doc:  "Kind = \"mesh\"\nallow_enabling_permissive_mutual_tls = true\nhttp { sanitize_x_forwarded_client_cert = true }\npeering { peer_through_mesh_gateways = true }\n",
			want: &MeshConfigEntry{Kind: MeshConfig, Name: "mesh", AllowEnablingPermissiveMutualTLS: true,
				HTTP: &MeshHTTPConfig{SanitizeXForwardedClientCert: true}, Peering: &PeeringMeshConfig{PeerThroughMeshGateways: true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.doc), "entry")
			if err != nil {
				t.Fatalf("Decode: got error %v, want nil", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				gb, _ := json.Marshal(got)
				wb, _ := json.Marshal(tt.want)
				t.Fatalf("got %s, want %s", gb, wb)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: got error %v, want nil", err)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr string
	}{
		{"unknown field in route", `{"Kind":"service-router","Name":"web","Routes":[{"Match":{"HTTP":{"PathPrefx":"/a"}}}]}`,
			`decode service-router config entry: Routes[0].Match.HTTP: unknown field "PathPrefx"; did you mean "PathPrefix"?`},
		{"unknown field in consumer", "Kind = \"exported-services\"\nServices = [{ Name = \"web\", Consumers = [{ Peers = \"west\" }] }]\n",
			`Services[0].Consumers[0]: unknown field "Peers"; did you mean "Peer"?`},
		{"unknown top-level field", `{"Kind":"mesh","Foo":1}`, `decode mesh config entry: unknown field "Foo"; valid fields are Kind, Name, Partition`},
		{"wrong type", `{"Kind":"service-splitter","Name":"web","Splits":[{"Weight":"ninety"}]}`, `Splits[0].Weight: expected a number, got string "ninety"`},
		{"bad duration", `{"Kind":"service-resolver","Name":"web","ConnectTimeout":"soon"}`, `ConnectTimeout: invalid duration "soon"`},
		{"missing kind", `{"Name":"web"}`, "decode config entry: missing Kind; set it to one of exported-services, service-intentions"},
		{"unknown kind", `{"Kind":"service-route","Name":"web"}`, `Kind: unknown config entry kind "service-route"; valid kinds are`},
		{"kind case", `{"Kind":"Service-Router","Name":"web"}`, `did you mean "service-router"?`},
		{"kind not a string", `{"Kind":1}`, "Kind: expected a string"},
		{"kind twice", `{"Kind":"mesh","kind":"mesh"}`, `"Kind" and "kind" both set Kind`},
		{"hcl syntax", "Kind = \"mesh\"\nPeering {\n", "entry.hcl:"},
		{"json syntax", "{\"Kind\": \"mesh\",\n}", "entry.hcl:2,1: invalid character '}'"},
		{"hcl variable", "Kind = \"service-defaults\"\nName = web\n", "Name: entry.hcl:2,8-11: Variables not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.doc), "entry.hcl")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want it to contain %q", err, tt.wantErr)
			}
			var de *decode.Error
			if !errors.As(err, &de) {
				t.Errorf("got error of type %T, want one wrapping *decode.Error", err)
			}
		})
	}
}

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr string
	}{
		{"json", `{"Kind":"mesh"}`, ""},
		{"hcl is rejected", `Kind = "mesh"`, "expected a JSON object"},
		{"list is rejected", `[{"Kind":"mesh"}]`, "expected a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeJSON([]byte(tt.doc))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got error %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestDecodeKind(t *testing.T) {
	tests := []struct {
		name    string
		kind    string
		doc     string
		want    Entry
		wantErr string
	}{
		{"kind set", ServiceDefaults, `{"Kind":"service-defaults","Name":"web","CreateIndex":4,"ModifyIndex":7}`,
			&ServiceConfigEntry{Kind: ServiceDefaults, Name: "web", RaftIndex: RaftIndex{CreateIndex: 4, ModifyIndex: 7}}, ""},
		{"kind filled in", MeshConfig, `{"Name":"mesh"}`, &MeshConfigEntry{Kind: MeshConfig, Name: "mesh"}, ""},
		{"not normalized", ProxyDefaults, `{"Config":{"protocol":"HTTP"}}`, &ProxyConfigEntry{Kind: ProxyDefaults, Config: map[string]any{"protocol": "HTTP"}}, ""},
		{"kind mismatch", ServiceDefaults, `{"Kind":"mesh"}`, nil, `Kind: got kind "mesh", want "service-defaults"`},
		{"unknown kind", "ingress-gateway", `{}`, nil, `unknown config entry kind "ingress-gateway"`},
		{"strict", ServiceRouter, `{"Name":"web","Routes":[{"Bogus":1}]}`, nil, `Routes[0]: unknown field "Bogus"`},
		{"null", ServiceRouter, `null`, nil, "expected a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeKind(tt.kind, []byte(tt.doc))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestNewAndKinds(t *testing.T) {
	for _, k := range Kinds() {
		t.Run(k, func(t *testing.T) {
			e, err := New(k)
			if err != nil {
				t.Fatalf("New(%q): got error %v, want nil", k, err)
			}
			if e.GetKind() != k {
				t.Errorf("got kind %q, want %q", e.GetKind(), k)
			}
			if *kindField(e) != k {
				t.Errorf("got Kind field %q, want %q", *kindField(e), k)
			}
			if e.GetRaftIndex() == nil {
				t.Errorf("got nil raft index, want a pointer into the entry")
			}
		})
	}
	if got := len(Kinds()); got != 8 {
		t.Errorf("got %d kinds, want 8", got)
	}
	ks := Kinds()
	ks[0] = "changed"
	if Kinds()[0] == "changed" {
		t.Errorf("got a shared slice from Kinds, want a copy")
	}
}

func TestRaftIndexIsFlat(t *testing.T) {
	e := &ServiceConfigEntry{Kind: ServiceDefaults, Name: "web"}
	e.GetRaftIndex().ModifyIndex = 9
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"CreateIndex":0,"ModifyIndex":9`) {
		t.Errorf("got %s, want flat CreateIndex and ModifyIndex fields", b)
	}
}

func TestProtocol(t *testing.T) {
	tests := []struct {
		name  string
		entry Entry
		want  string
	}{
		{"service-defaults", &ServiceConfigEntry{Protocol: "http"}, "http"},
		{"proxy-defaults", &ProxyConfigEntry{Config: map[string]any{"protocol": "GRPC"}}, "grpc"},
		{"proxy-defaults without protocol", &ProxyConfigEntry{}, ""},
		{"other kind", &MeshConfigEntry{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Protocol(tt.entry); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
