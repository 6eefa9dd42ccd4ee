package configentry

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func ptr[T any](v T) *T { return &v }

// apiEntries are entries of every kind built with Consul's API types, with
// many fields set. They are valid and already normalized, so they must
// survive our decode and encode unchanged.
func apiEntries() []api.ConfigEntry {
	return []api.ConfigEntry{
		&api.ExportedServicesConfigEntry{
			Name: "default",
			Services: []api.ExportedService{
				{Name: "web", Consumers: []api.ServiceConsumer{{Peer: "west"}, {Partition: "p2"}, {SamenessGroup: "sg1"}}},
				{Name: "*", Namespace: "*", Consumers: []api.ServiceConsumer{{Peer: "east"}}},
			},
			Meta: map[string]string{"owner": "team-a"},
		},
		&api.ServiceIntentionsConfigEntry{
			Kind: api.ServiceIntentions,
			Name: "api",
			Sources: []*api.SourceIntention{
				{Name: "frontend", Peer: "east", Action: api.IntentionActionAllow, Precedence: 9, Type: api.IntentionSourceConsul, Description: "from the east"},
				{Name: "admin", Namespace: "ops", Precedence: 9, Type: api.IntentionSourceConsul, Permissions: []*api.IntentionPermission{
					{Action: api.IntentionActionAllow, HTTP: &api.IntentionHTTPPermission{
						PathPrefix: "/admin", Methods: []string{"GET", "POST"},
						Header: []api.IntentionHTTPHeaderPermission{{Name: "x-user", Contains: "ops", IgnoreCase: true}, {Name: "x-debug", Present: true, Invert: true}},
					}},
					{Action: api.IntentionActionDeny, HTTP: &api.IntentionHTTPPermission{PathRegex: "^/internal/.*"},
						JWT: &api.IntentionJWTRequirement{Providers: []*api.IntentionJWTProvider{{Name: "okta", VerifyClaims: []*api.IntentionJWTClaimVerification{{Path: []string{"role"}, Value: "admin"}}}}}},
				}},
				{Name: "*", Action: api.IntentionActionDeny, Precedence: 8, Type: api.IntentionSourceConsul},
			},
			JWT:  &api.IntentionJWTRequirement{Providers: []*api.IntentionJWTProvider{{Name: "okta"}}},
			Meta: map[string]string{"a": "b"},
		},
		&api.ServiceRouterConfigEntry{
			Kind: api.ServiceRouter,
			Name: "web",
			Routes: []api.ServiceRoute{
				{
					Match: &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{
						PathPrefix: "/admin", CaseInsensitive: true, Methods: []string{"GET"},
						Header:     []api.ServiceRouteHTTPMatchHeader{{Name: "x-debug", Exact: "1"}, {Name: "x-trace", Present: true, Invert: true}},
						QueryParam: []api.ServiceRouteHTTPMatchQueryParam{{Name: "canary", Regex: "^(true|1)$"}},
					}},
					Destination: &api.ServiceRouteDestination{
						Service: "admin", ServiceSubset: "v2", PrefixRewrite: "/",
						RequestTimeout: 15 * time.Second, IdleTimeout: 90 * time.Second,
						NumRetries: 3, RetryOnConnectFailure: true, RetryOnStatusCodes: []uint32{503, 504}, RetryOn: []string{"reset", "5xx"},
						RequestHeaders:  &api.HTTPHeaderModifiers{Add: map[string]string{"x-a": "1"}, Set: map[string]string{"x-b": "2"}, Remove: []string{"x-c"}},
						ResponseHeaders: &api.HTTPHeaderModifiers{Remove: []string{"server"}},
					},
				},
				{Match: &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathExact: "/healthz"}}},
			},
		},
		&api.ServiceSplitterConfigEntry{
			Kind: api.ServiceSplitter,
			Name: "web",
			Splits: []api.ServiceSplit{
				{Weight: 33.33, ServiceSubset: "v1"},
				{Weight: 66.67, Service: "web-v2", RequestHeaders: &api.HTTPHeaderModifiers{Set: map[string]string{"x-version": "2"}}},
			},
		},
		&api.ServiceResolverConfigEntry{
			Kind:          api.ServiceResolver,
			Name:          "web",
			DefaultSubset: "v1",
			Subsets: map[string]api.ServiceResolverSubset{
				"v1": {Filter: "Service.Meta.version == v1"},
				"v2": {Filter: "Service.Meta.version == v2", OnlyPassing: true},
			},
			Failover: map[string]api.ServiceResolverFailover{
				"*":  {Targets: []api.ServiceResolverFailoverTarget{{Peer: "cluster-01"}, {Service: "web", Datacenter: "dc2"}}},
				"v2": {ServiceSubset: "v1", Policy: &api.ServiceResolverFailoverPolicy{Mode: "sequential"}},
			},
			ConnectTimeout:       5 * time.Second,
			RequestTimeout:       30 * time.Second,
			PrioritizeByLocality: &api.ServiceResolverPrioritizeByLocality{Mode: "failover"},
			LoadBalancer: &api.LoadBalancer{
				Policy:         "ring_hash",
				RingHashConfig: &api.RingHashConfig{MinimumRingSize: 1024, MaximumRingSize: 8192},
				HashPolicies: []api.HashPolicy{
					{Field: "cookie", FieldValue: "session", CookieConfig: &api.CookieConfig{TTL: 10 * time.Minute, Path: "/"}},
					{SourceIP: true, Terminal: true},
				},
			},
		},
		&api.ServiceResolverConfigEntry{
			Kind:     api.ServiceResolver,
			Name:     "api",
			Redirect: &api.ServiceResolverRedirect{Service: "api", Peer: "cluster-02", Namespace: "ns1"},
		},
		&api.ServiceConfigEntry{
			Kind:             api.ServiceDefaults,
			Name:             "web",
			Protocol:         "http",
			Mode:             api.ProxyModeTransparent,
			TransparentProxy: &api.TransparentProxyConfig{OutboundListenerPort: 15001, DialedDirectly: true},
			MutualTLSMode:    api.MutualTLSModeStrict,
			MeshGateway:      api.MeshGatewayConfig{Mode: api.MeshGatewayModeLocal},
			Expose:           api.ExposeConfig{Checks: true, Paths: []api.ExposePath{{ListenerPort: 21500, Path: "/metrics", LocalPathPort: 9102, Protocol: "http"}}},
			ExternalSNI:      "web.example.com",
			UpstreamConfig: &api.UpstreamConfiguration{
				Overrides: []*api.UpstreamConfig{{
					Name: "db", Peer: "cluster-02", Protocol: "tcp", ConnectTimeoutMs: 2000,
					Limits:      &api.UpstreamLimits{MaxConnections: ptr(100), MaxPendingRequests: ptr(10), MaxConcurrentRequests: ptr(50)},
					MeshGateway: api.MeshGatewayConfig{Mode: api.MeshGatewayModeRemote},
				}},
				Defaults: &api.UpstreamConfig{
					Protocol: "http", BalanceOutboundConnections: "exact_balance",
					PassiveHealthCheck: &api.PassiveHealthCheck{
						Interval: 10 * time.Second, MaxFailures: 5, EnforcingConsecutive5xx: ptr(uint32(80)),
						MaxEjectionPercent: ptr(uint32(20)), BaseEjectionTime: ptr(30 * time.Second),
					},
				},
			},
			MaxInboundConnections:     100,
			LocalConnectTimeoutMs:     1000,
			LocalRequestTimeoutMs:     2000,
			BalanceInboundConnections: "exact_balance",
			EnvoyExtensions:           []api.EnvoyExtension{{Name: "builtin/lua", Required: true, Arguments: map[string]any{"Script": "x", "Listener": "inbound"}}},
			Meta:                      map[string]string{"team": "web"},
			MaxRequestHeadersKB:       ptr(uint32(96)),
		},
		&api.ServiceConfigEntry{
			Kind:        api.ServiceDefaults,
			Name:        "external-api",
			Protocol:    "tcp",
			Destination: &api.DestinationConfig{Addresses: []string{"api.example.com", "10.0.0.7"}, Port: 443},
		},
		&api.ProxyConfigEntry{
			Kind:                 api.ProxyDefaults,
			Name:                 api.ProxyConfigGlobal,
			Mode:                 api.ProxyModeDirect,
			TransparentProxy:     &api.TransparentProxyConfig{OutboundListenerPort: 15001},
			MutualTLSMode:        api.MutualTLSModePermissive,
			Config:               map[string]any{"protocol": "http", "local_connect_timeout_ms": float64(1000), "nested": map[string]any{"list": []any{"a", true}}},
			MeshGateway:          api.MeshGatewayConfig{Mode: api.MeshGatewayModeNone},
			Expose:               api.ExposeConfig{Checks: true},
			AccessLogs:           &api.AccessLogsConfig{Enabled: true, Type: api.FileLogSinkType, Path: "/var/log/envoy/access.log", TextFormat: "%START_TIME%"},
			FailoverPolicy:       &api.ServiceResolverFailoverPolicy{Mode: "order-by-locality", Regions: []string{"us-east-1"}},
			PrioritizeByLocality: &api.ServiceResolverPrioritizeByLocality{Mode: "none"},
			Meta:                 map[string]string{"k": "v"},
		},
		&api.MeshConfigEntry{
			TransparentProxy:                 api.TransparentProxyMeshConfig{MeshDestinationsOnly: true},
			AllowEnablingPermissiveMutualTLS: true,
			ValidateClusters:                 true,
			TLS: &api.MeshTLSConfig{
				Incoming: &api.MeshDirectionalTLSConfig{TLSMinVersion: "TLSv1_2", TLSMaxVersion: "TLSv1_3", CipherSuites: []string{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}},
				Outgoing: &api.MeshDirectionalTLSConfig{TLSMinVersion: "TLSv1_3"},
			},
			HTTP: &api.MeshHTTPConfig{SanitizeXForwardedClientCert: true, Incoming: &api.MeshDirectionalHTTPConfig{
				RequestNormalization: &api.RequestNormalizationMeshConfig{InsecureDisablePathNormalization: false, MergeSlashes: true, PathWithEscapedSlashesAction: "REJECT_REQUEST", HeadersWithUnderscoresAction: "DROP_HEADER"},
			}},
			Peering: &api.PeeringMeshConfig{PeerThroughMeshGateways: true},
			Meta:    map[string]string{"x": "y"},
		},
	}
}

// newAPIEntry returns an empty API struct of the same type as e.
func newAPIEntry(e api.ConfigEntry) api.ConfigEntry {
	return reflect.New(reflect.TypeOf(e).Elem()).Interface().(api.ConfigEntry)
}

func TestAPIJSONRoundTrip(t *testing.T) {
	for _, orig := range apiEntries() {
		t.Run(orig.GetKind()+"/"+orig.GetName(), func(t *testing.T) {
			in, err := json.Marshal(orig)
			if err != nil {
				t.Fatal(err)
			}
			ours, err := DecodeJSON(in)
			if err != nil {
				t.Fatalf("DecodeJSON(%s): got error %v, want nil", in, err)
			}
			if err := ours.Validate(); err != nil {
				t.Fatalf("Validate: got error %v, want nil", err)
			}
			if ours.GetKind() != orig.GetKind() || ours.GetName() != orig.GetName() {
				t.Errorf("got kind/name %s/%s, want %s/%s", ours.GetKind(), ours.GetName(), orig.GetKind(), orig.GetName())
			}
			out, err := json.Marshal(ours)
			if err != nil {
				t.Fatal(err)
			}
			back := newAPIEntry(orig)
			if err := json.Unmarshal(out, back); err != nil {
				t.Fatalf("unmarshal %s into %T: %v", out, back, err)
			}
			if !reflect.DeepEqual(orig, back) {
				t.Errorf("round trip changed the entry:\n got %s\nwant %s", mustJSON(back), in)
			}

			// The raft log path: what we encode, DecodeKind reads back unchanged.
			again, err := DecodeKind(ours.GetKind(), out)
			if err != nil {
				t.Fatalf("DecodeKind: got error %v, want nil", err)
			}
			if !reflect.DeepEqual(again, ours) {
				t.Errorf("DecodeKind changed the entry:\n got %s\nwant %s", mustJSON(again), out)
			}
		})
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// fakeConfigAPI serves /v1/config the way Consul does, storing our types.
type fakeConfigAPI struct {
	mu      sync.Mutex
	index   uint64
	entries map[string]Entry // kind + "/" + name
}

func (f *fakeConfigAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1/config"), "/")
	switch {
	case r.Method == http.MethodPut && len(parts) == 1:
		body, _ := io.ReadAll(r.Body)
		e, err := DecodeJSON(body)
		if err == nil {
			err = e.Validate()
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		k := e.GetKind() + "/" + e.GetName()
		prev, exists := f.entries[k]
		if cas := r.URL.Query().Get("cas"); cas != "" {
			want, _ := strconv.ParseUint(cas, 10, 64)
			if (want == 0 && exists) || (want != 0 && (!exists || prev.GetRaftIndex().ModifyIndex != want)) {
				fmt.Fprint(w, "false")
				return
			}
		}
		f.index++
		ri := e.GetRaftIndex()
		ri.CreateIndex, ri.ModifyIndex = f.index, f.index
		if exists {
			ri.CreateIndex = prev.GetRaftIndex().CreateIndex
		}
		f.entries[k] = e
		fmt.Fprint(w, "true")
	case r.Method == http.MethodGet && len(parts) == 3:
		e, ok := f.entries[parts[1]+"/"+parts[2]]
		if !ok {
			http.Error(w, "Config entry not found", http.StatusNotFound)
			return
		}
		w.Header().Set("X-Consul-Index", strconv.FormatUint(f.index, 10))
		_ = json.NewEncoder(w).Encode(e)
	case r.Method == http.MethodGet && len(parts) == 2:
		var list []Entry
		for k, e := range f.entries {
			if strings.HasPrefix(k, parts[1]+"/") {
				list = append(list, e)
			}
		}
		sort.Slice(list, func(i, j int) bool { return list[i].GetName() < list[j].GetName() })
		if list == nil {
			list = []Entry{}
		}
		w.Header().Set("X-Consul-Index", strconv.FormatUint(f.index, 10))
		_ = json.NewEncoder(w).Encode(list)
	case r.Method == http.MethodDelete && len(parts) == 3:
		delete(f.entries, parts[1]+"/"+parts[2])
		fmt.Fprint(w, "true")
	default:
		http.Error(w, "unexpected request", http.StatusMethodNotAllowed)
	}
}

// setIndex sets the raft indexes of an API entry.
func setIndex(e api.ConfigEntry, create, modify uint64) {
	v := reflect.ValueOf(e).Elem()
	v.FieldByName("CreateIndex").SetUint(create)
	v.FieldByName("ModifyIndex").SetUint(modify)
}

func TestAPIClient(t *testing.T) {
	srv := httptest.NewServer(&fakeConfigAPI{entries: map[string]Entry{}})
	defer srv.Close()
	client, err := api.NewClient(&api.Config{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ce := client.ConfigEntries()

	for _, orig := range apiEntries() {
		t.Run(orig.GetKind()+"/"+orig.GetName(), func(t *testing.T) {
			ok, _, err := ce.CAS(orig, 0, nil)
			if err != nil || !ok {
				t.Fatalf("CAS(0): got %v, %v, want true, nil", ok, err)
			}
			got, qm, err := ce.Get(orig.GetKind(), orig.GetName(), nil)
			if err != nil {
				t.Fatalf("Get: got error %v, want nil", err)
			}
			idx := got.GetModifyIndex()
			if idx == 0 || qm.LastIndex == 0 {
				t.Errorf("got ModifyIndex %d and X-Consul-Index %d, want both set", idx, qm.LastIndex)
			}
			want := newAPIEntry(orig)
			if err := json.Unmarshal([]byte(mustJSON(orig)), want); err != nil {
				t.Fatal(err)
			}
			setIndex(want, idx, idx)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Get:\n got %s\nwant %s", mustJSON(got), mustJSON(want))
			}

			if ok, _, err := ce.CAS(orig, idx+100, nil); err != nil || ok {
				t.Errorf("CAS with a stale index: got %v, %v, want false, nil", ok, err)
			}
			if ok, _, err := ce.Set(orig, nil); err != nil || !ok {
				t.Errorf("Set: got %v, %v, want true, nil", ok, err)
			}

			list, _, err := ce.List(orig.GetKind(), nil)
			if err != nil {
				t.Fatalf("List: got error %v, want nil", err)
			}
			found := false
			for _, e := range list {
				if e.GetName() == orig.GetName() {
					found = true
					if e.GetCreateIndex() != idx || e.GetModifyIndex() <= idx {
						t.Errorf("List: got indexes %d/%d, want %d and above %d", e.GetCreateIndex(), e.GetModifyIndex(), idx, idx)
					}
				}
				if e.GetKind() != orig.GetKind() {
					t.Errorf("List: got kind %q, want %q", e.GetKind(), orig.GetKind())
				}
			}
			if !found {
				t.Errorf("List: got %d entries without %q", len(list), orig.GetName())
			}

			if _, err := ce.Delete(orig.GetKind(), orig.GetName(), nil); err != nil {
				t.Fatalf("Delete: got error %v, want nil", err)
			}
			if _, _, err := ce.Get(orig.GetKind(), orig.GetName(), nil); err == nil || !strings.Contains(err.Error(), "404") {
				t.Errorf("Get after Delete: got error %v, want a 404", err)
			}
		})
	}

	t.Run("invalid entry is rejected", func(t *testing.T) {
		bad := &api.ExportedServicesConfigEntry{Name: "default", Services: []api.ExportedService{{Name: "web", Consumers: []api.ServiceConsumer{{Peer: "*"}}}}}
		_, _, err := ce.Set(bad, nil)
		if err == nil || !strings.Contains(err.Error(), "Services[0].Consumers[0].Peer: exporting to all peers (wildcard) is not supported") {
			t.Errorf("got error %v, want the wildcard peer error", err)
		}
	})
}
