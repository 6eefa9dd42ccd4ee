package configentry

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/internal/decode"
)

type validateCase struct {
	name    string
	entry   Entry
	wantErr string // "" means valid; otherwise a substring of err.Error()
}

// runValidate normalizes and validates each entry.
func runValidate(t *testing.T, tests []validateCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.entry.Normalize()
			err := tt.entry.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got error %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got nil error, want one containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got error %q, want it to contain %q", err, tt.wantErr)
			}
			var de *decode.Error
			if !errors.As(err, &de) {
				t.Errorf("got error of type %T, want *decode.Error", err)
			}
		})
	}
}

func bigMeta(n, keyLen, valLen int) map[string]string {
	m := map[string]string{}
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("k%d", i)
		if keyLen > 0 {
			k = strings.Repeat("k", keyLen)
		}
		m[k] = strings.Repeat("v", valLen)
	}
	return m
}

func exports(svcs ...ExportedService) *ExportedServicesConfigEntry {
	return &ExportedServicesConfigEntry{Name: "default", Services: svcs}
}

func TestValidateExportedServices(t *testing.T) {
	peer := func(p string) []ServiceConsumer { return []ServiceConsumer{{Peer: p}} }
	runValidate(t, []validateCase{
		{"valid peer", exports(ExportedService{Name: "web", Consumers: peer("west")}), ""},
		{"valid partition and sameness group", exports(ExportedService{Name: "web", Consumers: []ServiceConsumer{{Partition: "p2"}, {SamenessGroup: "sg1"}}}), ""},
		{"valid wildcard service", exports(ExportedService{Name: "*", Consumers: peer("west")}), ""},
		{"valid wildcard namespace and name", exports(ExportedService{Name: "*", Namespace: "*", Consumers: peer("west")}), ""},
		{"valid empty services", exports(), ""},
		{"name defaults to default", &ExportedServicesConfigEntry{}, ""},
		{"name must be default", &ExportedServicesConfigEntry{Name: "p1"}, `Name: exported-services Name must be "default"`},
		{"partition must match name", &ExportedServicesConfigEntry{Name: "default", Partition: "other"}, "Partition: must be empty or equal to Name"},
		{"service name required", exports(ExportedService{Consumers: peer("west")}), "Services[0].Name: service name cannot be empty"},
		{"service name invalid", exports(ExportedService{Name: "web app", Consumers: peer("west")}), `Services[0].Name: "web app" is not a valid service name`},
		{"service name at the limit", exports(ExportedService{Name: strings.Repeat("s", MaxServiceNameLength), Consumers: peer("west")}), ""},
		{"service name too long", exports(ExportedService{Name: strings.Repeat("s", MaxServiceNameLength+1), Consumers: peer("west")}), "Services[0].Name: name is 254 bytes long; the limit is 253"},
		{"partial wildcard name", exports(ExportedService{Name: "web*", Consumers: peer("west")}), "Services[0].Name: wildcard character '*' cannot be used with partial values"},
		{"consumer required", exports(ExportedService{Name: "web"}), "Services[0].Consumers: must have at least one consumer"},
		{"empty consumer", exports(ExportedService{Name: "web", Consumers: []ServiceConsumer{{}}}), "Services[0].Consumers[0]: one of Peer, Partition or SamenessGroup must be set"},
		{"peer and partition", exports(ExportedService{Name: "web", Consumers: []ServiceConsumer{{Peer: "a", Partition: "b"}}}),
			"Services[0].Consumers[0]: at most one of Peer, Partition or SamenessGroup may be set; split this consumer into one consumer per field"},
		{"peer and sameness group", exports(ExportedService{Name: "web", Consumers: []ServiceConsumer{{Peer: "a"}, {Peer: "a", SamenessGroup: "b"}}}),
			"Services[0].Consumers[1]: at most one of Peer, Partition or SamenessGroup"},
		{"wildcard peer", exports(ExportedService{Name: "web", Consumers: peer("*")}), "Services[0].Consumers[0].Peer: exporting to all peers (wildcard) is not supported"},
		{"wildcard partition", exports(ExportedService{Name: "web", Consumers: []ServiceConsumer{{Partition: "*"}}}), "Services[0].Consumers[0].Partition: exporting to all partitions (wildcard) is not supported"},
		{"wildcard namespace needs wildcard name", exports(ExportedService{Name: "web", Namespace: "*", Consumers: peer("west")}), "Services[0]: service name must be wildcard if namespace is wildcard"},
		{"uppercase peer", exports(ExportedService{Name: "web", Consumers: peer("West")}), `Services[0].Consumers[0].Peer: "West" is not a valid peer name: a valid peering name must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character`},
		{"peer ending in dash", exports(ExportedService{Name: "web", Consumers: peer("west-")}), "is not a valid peer name"},
		{"peer too long", exports(ExportedService{Name: "web", Consumers: peer(strings.Repeat("a", 64))}), "is not a valid peer name"},
		{"peer of 63 characters", exports(ExportedService{Name: "web", Consumers: peer(strings.Repeat("a", 63))}), ""},
		{"duplicate service", exports(ExportedService{Name: "web", Consumers: peer("a")}, ExportedService{Name: "web", Consumers: peer("b")}),
			`Services[1]: service "web" is already exported by Services[0]`},
		{"same name in other namespace", exports(ExportedService{Name: "web", Consumers: peer("a")}, ExportedService{Name: "web", Namespace: "ns1", Consumers: peer("b")}), ""},
		{"too many meta keys", &ExportedServicesConfigEntry{Meta: bigMeta(65, 0, 1)}, "Meta: at most 64 keys may be set, got 65"},
		{"meta key too long", &ExportedServicesConfigEntry{Meta: bigMeta(1, 129, 1)}, "key is 129 bytes long; the limit is 128"},
		{"meta value too long", &ExportedServicesConfigEntry{Meta: bigMeta(1, 0, 513)}, "value is 513 bytes long; the limit is 512"},
		{"meta at limits", &ExportedServicesConfigEntry{Meta: bigMeta(64, 0, 512)}, ""},
	})
}

func intentions(name string, srcs ...*SourceIntention) *ServiceIntentionsConfigEntry {
	return &ServiceIntentionsConfigEntry{Name: name, Sources: srcs}
}

func httpPerm(action IntentionAction, h IntentionHTTPPermission) *IntentionPermission {
	return &IntentionPermission{Action: action, HTTP: &h}
}

func TestValidateServiceIntentions(t *testing.T) {
	ts := time.Unix(0, 0)
	runValidate(t, []validateCase{
		{"valid", intentions("api", &SourceIntention{Name: "frontend", Peer: "east", Action: "allow"}), ""},
		{"valid wildcard destination", intentions("*", &SourceIntention{Name: "*", Action: "deny"}), ""},
		{"valid permissions", intentions("api", &SourceIntention{Name: "web", Permissions: []*IntentionPermission{
			httpPerm("allow", IntentionHTTPPermission{PathPrefix: "/v1", Methods: []string{"get", "POST"}}),
			httpPerm("deny", IntentionHTTPPermission{Header: []IntentionHTTPHeaderPermission{{Name: "x-debug", Present: true}}}),
		}}), ""},
		{"name required", intentions("", &SourceIntention{Name: "a", Action: "allow"}), "Name: name is required"},
		{"partial wildcard destination", intentions("api*", &SourceIntention{Name: "a", Action: "allow"}), "Name: wildcard character '*' cannot be used with partial values"},
		{"exact name after wildcard namespace", &ServiceIntentionsConfigEntry{Name: "api", Namespace: "*", Sources: []*SourceIntention{{Name: "a", Action: "allow"}}}, "Name: exact value cannot follow wildcard namespace"},
		{"sources required", intentions("api"), "Sources: at least one source is required"},
		{"null source", intentions("api", nil), "Sources[0]: must not be null"},
		{"source name required", intentions("api", &SourceIntention{Action: "allow"}), "Sources[0].Name: name is required"},
		{"action required", intentions("api", &SourceIntention{Name: "a"}), "Sources[0].Action: action must be set to 'allow' or 'deny'"},
		{"bad action", intentions("api", &SourceIntention{Name: "a", Action: "permit"}), "Sources[0].Action: action must be set to 'allow' or 'deny'"},
		{"action with permissions", intentions("api", &SourceIntention{Name: "a", Action: "allow", Permissions: []*IntentionPermission{
			httpPerm("allow", IntentionHTTPPermission{PathExact: "/"})}}), "Sources[0].Action: action must be omitted if Permissions are specified"},
		{"permissions on wildcard destination", intentions("*", &SourceIntention{Name: "a", Permissions: []*IntentionPermission{
			httpPerm("allow", IntentionHTTPPermission{PathExact: "/"})}}), "Sources[0].Permissions: permissions cannot be specified on intentions with wildcarded destinations"},
		{"permission action", intentions("api", &SourceIntention{Name: "a", Permissions: []*IntentionPermission{
			httpPerm("", IntentionHTTPPermission{PathExact: "/"})}}), "Sources[0].Permissions[0].Action: action must be set"},
		{"permission HTTP required", intentions("api", &SourceIntention{Name: "a", Permissions: []*IntentionPermission{{Action: "allow"}}}), "Sources[0].Permissions[0].HTTP: is required"},
		{"permission empty", intentions("api", &SourceIntention{Name: "a", Permissions: []*IntentionPermission{
			httpPerm("allow", IntentionHTTPPermission{})}}), "Sources[0].Permissions[0].HTTP: should not be empty"},
		{"permission two paths", intentions("api", &SourceIntention{Name: "a", Permissions: []*IntentionPermission{
			httpPerm("allow", IntentionHTTPPermission{PathExact: "/a", PathPrefix: "/b"})}}), "Sources[0].Permissions[0].HTTP: should only contain at most one of PathExact, PathPrefix, or PathRegex"},
		{"permission path slash", intentions("api", &SourceIntention{Name: "a", Permissions: []*IntentionPermission{
			httpPerm("allow", IntentionHTTPPermission{PathPrefix: "v1"})}}), `Sources[0].Permissions[0].HTTP.PathPrefix: doesn't start with '/': "v1"`},
		{"permission bad regex", intentions("api", &SourceIntention{Name: "a", Permissions: []*IntentionPermission{
			httpPerm("allow", IntentionHTTPPermission{PathRegex: "(("})}}), "Sources[0].Permissions[0].HTTP.PathRegex: invalid regular expression"},
		{"permission header op", intentions("api", &SourceIntention{Name: "a", Permissions: []*IntentionPermission{
			httpPerm("allow", IntentionHTTPPermission{Header: []IntentionHTTPHeaderPermission{{Name: "x", Exact: "a", Prefix: "b"}}})}}),
			"Sources[0].Permissions[0].HTTP.Header[0]: should only contain one of Present, Exact, Prefix, Suffix, Contains, or Regex"},
		{"permission header name", intentions("api", &SourceIntention{Name: "a", Permissions: []*IntentionPermission{
			httpPerm("allow", IntentionHTTPPermission{Header: []IntentionHTTPHeaderPermission{{Exact: "a"}}})}}),
			"Sources[0].Permissions[0].HTTP.Header[0].Name: missing required Name field"},
		{"permission bad method", intentions("api", &SourceIntention{Name: "a", Permissions: []*IntentionPermission{
			httpPerm("allow", IntentionHTTPPermission{Methods: []string{"FETCH"}})}}), `Sources[0].Permissions[0].HTTP.Methods[0]: invalid method "FETCH"`},
		{"permission duplicate method", intentions("api", &SourceIntention{Name: "a", Permissions: []*IntentionPermission{
			httpPerm("allow", IntentionHTTPPermission{Methods: []string{"GET", "get"}})}}), `Methods[1]: method "GET" is listed more than once`},
		{"peer with partition", intentions("api", &SourceIntention{Name: "a", Peer: "east", Partition: "p1", Action: "allow"}), "Sources[0].Peer: cannot set Peer and Partition at the same time"},
		{"peer with sameness group", intentions("api", &SourceIntention{Name: "a", Peer: "east", SamenessGroup: "sg", Action: "allow"}), "Sources[0].SamenessGroup: cannot set SamenessGroup and Peer at the same time"},
		{"sameness group with partition", intentions("api", &SourceIntention{Name: "a", Partition: "p1", SamenessGroup: "sg", Action: "allow"}), "Sources[0].SamenessGroup: cannot set SamenessGroup and Partition at the same time"},
		{"wildcard peer", intentions("api", &SourceIntention{Name: "a", Peer: "*", Action: "allow"}), "Sources[0].Peer: cannot use wildcard '*' in peer"},
		{"invalid peer", intentions("api", &SourceIntention{Name: "a", Peer: "East_1", Action: "allow"}), `Sources[0].Peer: "East_1" is not a valid peer name`},
		{"wildcard partition", intentions("api", &SourceIntention{Name: "a", Partition: "*", Action: "allow"}), "Sources[0].Partition: cannot use wildcard '*' in partition"},
		{"partial wildcard source", intentions("api", &SourceIntention{Name: "we*", Action: "allow"}), "Sources[0].Name: wildcard character '*' cannot be used with partial values"},
		{"duplicate source", intentions("api", &SourceIntention{Name: "a", Action: "allow"}, &SourceIntention{Name: "a", Action: "deny"}), `Sources[1]: defines source "a" more than once (also Sources[0])`},
		{"duplicate peer source", intentions("api", &SourceIntention{Name: "a", Peer: "east", Action: "allow"}, &SourceIntention{Name: "a", Peer: "east", Action: "deny"}), `defines peer(east) source "a" more than once`},
		{"same name other peer", intentions("api", &SourceIntention{Name: "a", Peer: "east", Action: "allow"}, &SourceIntention{Name: "a", Action: "deny"}), ""},
		{"bad type", intentions("api", &SourceIntention{Name: "a", Action: "allow", Type: "external"}), "Sources[0].Type: type must be set to 'consul'"},
		{"legacy meta", intentions("api", &SourceIntention{Name: "a", Action: "allow", LegacyMeta: map[string]string{"a": "b"}}), "Sources[0].LegacyMeta: must be omitted"},
		{"legacy fields cleared by normalize", intentions("api", &SourceIntention{Name: "a", Action: "allow", LegacyID: "x", LegacyCreateTime: &ts, LegacyUpdateTime: &ts}), ""},
		{"description too long", intentions("api", &SourceIntention{Name: "a", Action: "allow", Description: strings.Repeat("d", 513)}), "Sources[0].Description: description is 513 bytes long"},
		{"jwt provider name", &ServiceIntentionsConfigEntry{Name: "api", JWT: &IntentionJWTRequirement{Providers: []*IntentionJWTProvider{{}}},
			Sources: []*SourceIntention{{Name: "a", Action: "allow"}}}, "JWT.Providers[0].Name: JWT provider name is required"},
		{"meta", &ServiceIntentionsConfigEntry{Name: "api", Meta: bigMeta(65, 0, 0), Sources: []*SourceIntention{{Name: "a", Action: "allow"}}}, "Meta: at most 64 keys"},
	})
}

func TestIntentionsNormalize(t *testing.T) {
	e := intentions("api",
		&SourceIntention{Name: "*", Action: "deny"},
		&SourceIntention{Name: "web", Action: "allow"},
		&SourceIntention{Name: "*", Namespace: "*", Action: "deny"},
		&SourceIntention{Name: "db", Peer: "east", Permissions: []*IntentionPermission{httpPerm("allow", IntentionHTTPPermission{Methods: []string{"get"}})}},
	)
	e.Normalize()
	var got []string
	for _, s := range e.Sources {
		got = append(got, fmt.Sprintf("%s/%s:%d:%s", s.Namespace, s.Name, s.Precedence, s.Type))
	}
	want := []string{"/web:9:consul", "/db:9:consul", "/*:8:consul", "*/*:7:consul"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got sources %v, want %v", got, want)
	}
	if m := e.Sources[1].Permissions[0].HTTP.Methods[0]; m != "GET" {
		t.Errorf("got method %q, want %q", m, "GET")
	}

	wild := intentions("*", &SourceIntention{Name: "web"}, &SourceIntention{Name: "*"})
	wild.Normalize()
	if p0, p1 := wild.Sources[0].Precedence, wild.Sources[1].Precedence; p0 != 6 || p1 != 5 {
		t.Errorf("got precedences %d, %d for a wildcard destination, want 6, 5", p0, p1)
	}
}

func router(routes ...ServiceRoute) *ServiceRouterConfigEntry {
	return &ServiceRouterConfigEntry{Name: "web", Routes: routes}
}

func httpRoute(m ServiceRouteHTTPMatch, d *ServiceRouteDestination) ServiceRoute {
	return ServiceRoute{Match: &ServiceRouteMatch{HTTP: &m}, Destination: d}
}

func TestValidateServiceRouter(t *testing.T) {
	runValidate(t, []validateCase{
		{"valid", router(
			httpRoute(ServiceRouteHTTPMatch{PathPrefix: "/admin"}, &ServiceRouteDestination{Service: "admin", PrefixRewrite: "/", RequestTimeout: decode.Duration(time.Second), NumRetries: 3, RetryOn: []string{"5xx"}}),
			httpRoute(ServiceRouteHTTPMatch{Header: []ServiceRouteHTTPMatchHeader{{Name: "x-debug", Exact: "1", Invert: true}}, QueryParam: []ServiceRouteHTTPMatchQueryParam{{Name: "q", Present: true}}, Methods: []string{"get"}}, &ServiceRouteDestination{ServiceSubset: "v2"}),
			httpRoute(ServiceRouteHTTPMatch{PathRegex: "^/v[0-9]+/"}, nil),
		), ""},
		{"valid no routes", router(), ""},
		{"name required", &ServiceRouterConfigEntry{}, "Name: name is required"},
		{"two paths", router(httpRoute(ServiceRouteHTTPMatch{PathExact: "/a", PathRegex: "b"}, nil)), "Routes[0].Match.HTTP: should only contain at most one of PathExact, PathPrefix, or PathRegex"},
		{"prefix slash", router(httpRoute(ServiceRouteHTTPMatch{PathPrefix: "admin"}, nil)), `Routes[0].Match.HTTP.PathPrefix: doesn't start with '/': "admin"`},
		{"exact slash", router(httpRoute(ServiceRouteHTTPMatch{PathExact: "admin"}, nil)), `Routes[0].Match.HTTP.PathExact: doesn't start with '/'`},
		{"bad regex", router(httpRoute(ServiceRouteHTTPMatch{PathRegex: "[a"}, nil)), "Routes[0].Match.HTTP.PathRegex: invalid regular expression"},
		{"prefix rewrite needs path", router(httpRoute(ServiceRouteHTTPMatch{PathRegex: "/a"}, &ServiceRouteDestination{PrefixRewrite: "/"})), "Routes[0].Destination.PrefixRewrite: cannot make use of PrefixRewrite without configuring either PathExact or PathPrefix"},
		{"prefix rewrite without match", router(ServiceRoute{Destination: &ServiceRouteDestination{PrefixRewrite: "/"}}), "Routes[0].Destination.PrefixRewrite"},
		{"header no op", router(httpRoute(ServiceRouteHTTPMatch{Header: []ServiceRouteHTTPMatchHeader{{Name: "x", Invert: true}}}, nil)), "Routes[0].Match.HTTP.Header[0]: should only contain one of Present, Exact, Prefix, Suffix, or Regex"},
		{"header two ops", router(httpRoute(ServiceRouteHTTPMatch{Header: []ServiceRouteHTTPMatchHeader{{Name: "x", Present: true, Suffix: "a"}}}, nil)), "Routes[0].Match.HTTP.Header[0]: should only contain one of"},
		{"header name", router(httpRoute(ServiceRouteHTTPMatch{Header: []ServiceRouteHTTPMatchHeader{{Exact: "a"}}}, nil)), "Routes[0].Match.HTTP.Header[0].Name: missing required Name field"},
		{"query param ops", router(httpRoute(ServiceRouteHTTPMatch{QueryParam: []ServiceRouteHTTPMatchQueryParam{{Name: "q", Exact: "a", Regex: "b"}}}, nil)), "Routes[0].Match.HTTP.QueryParam[0]: should only contain one of Present, Exact, or Regex"},
		{"invalid method", router(httpRoute(ServiceRouteHTTPMatch{Methods: []string{"GET", "BREW"}}, nil)), `Routes[0].Match.HTTP.Methods[1]: invalid method "BREW"`},
		{"duplicate method", router(httpRoute(ServiceRouteHTTPMatch{Methods: []string{"GET", "get"}}, nil)), `method "GET" is listed more than once`},
		{"retry condition", router(ServiceRoute{Destination: &ServiceRouteDestination{RetryOn: []string{"sometimes"}}}), `Routes[0].Destination.RetryOn[0]: invalid retry condition "sometimes"`},
		{"status code", router(ServiceRoute{Destination: &ServiceRouteDestination{RetryOnStatusCodes: []uint32{503, 42}}}), "Routes[0].Destination.RetryOnStatusCodes[1]: 42 is not an HTTP status code"},
		{"negative timeout", router(ServiceRoute{Destination: &ServiceRouteDestination{RequestTimeout: -1}}), "Routes[0].Destination.RequestTimeout: must not be negative"},
		{"bad subset", router(ServiceRoute{Destination: &ServiceRouteDestination{ServiceSubset: "V2"}}), `Routes[0].Destination.ServiceSubset: subset name "V2" is invalid`},
		{"bad header modifier", router(ServiceRoute{Destination: &ServiceRouteDestination{RequestHeaders: &HTTPHeaderModifiers{Set: map[string]string{"bad header": "x"}}}}), `Routes[0].Destination.RequestHeaders.Set["bad header"]: invalid header name`},
	})
}

func TestNumRetriesMustNotBeNegative(t *testing.T) {
	_, err := DecodeJSON([]byte(`{"Kind":"service-router","Name":"web","Routes":[{"Destination":{"NumRetries":-1}}]}`))
	want := "Routes[0].Destination.NumRetries: expected a whole number between 0 and 4294967295, got -1"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got error %v, want it to contain %q", err, want)
	}
}

func splitter(splits ...ServiceSplit) *ServiceSplitterConfigEntry {
	return &ServiceSplitterConfigEntry{Name: "web", Splits: splits}
}

func TestValidateServiceSplitter(t *testing.T) {
	runValidate(t, []validateCase{
		{"valid", splitter(ServiceSplit{Weight: 90, ServiceSubset: "v1"}, ServiceSplit{Weight: 10, ServiceSubset: "v2"}), ""},
		{"valid single", splitter(ServiceSplit{Weight: 100}), ""},
		{"valid thirds", splitter(ServiceSplit{Weight: 33.33, Service: "a"}, ServiceSplit{Weight: 33.33, Service: "b"}, ServiceSplit{Weight: 33.34, Service: "c"}), ""},
		{"valid after rounding", splitter(ServiceSplit{Weight: 50.004, Service: "a"}, ServiceSplit{Weight: 49.996, Service: "b"}), ""},
		{"each weight is rounded before summing", splitter(ServiceSplit{Weight: 33.333, Service: "a"}, ServiceSplit{Weight: 33.333, Service: "b"}, ServiceSplit{Weight: 33.334, Service: "c"}), "not 99.99"},
		{"valid zero weight", splitter(ServiceSplit{Weight: 100, Service: "a"}, ServiceSplit{Weight: 0, Service: "b"}), ""},
		{"name required", &ServiceSplitterConfigEntry{Splits: []ServiceSplit{{Weight: 100}}}, "Name: name is required"},
		{"no splits", splitter(), "Splits: no splits configured"},
		{"sum too low", splitter(ServiceSplit{Weight: 50, Service: "a"}, ServiceSplit{Weight: 49.5, Service: "b"}), "Splits: the sum of all split weights must be 100, not 99.50"},
		{"sum off by a hundredth", splitter(ServiceSplit{Weight: 50, Service: "a"}, ServiceSplit{Weight: 50.01, Service: "b"}), "not 100.01"},
		{"negative weight", splitter(ServiceSplit{Weight: -10, Service: "a"}, ServiceSplit{Weight: 110, Service: "b"}), "Splits[0].Weight: weight must be between 0 and 100, got -10"},
		{"weight over 100", splitter(ServiceSplit{Weight: 150}), "Splits[0].Weight: weight must be between 0 and 100, got 150"},
		{"duplicate destination", splitter(ServiceSplit{Weight: 50}, ServiceSplit{Weight: 50, Service: "web"}), `Splits[1]: split destination occurs more than once (also Splits[0]): service="web"`},
		{"bad service", splitter(ServiceSplit{Weight: 100, Service: "a b"}), `Splits[0].Service: "a b" is not a valid service name`},
	})
}

func TestSplitterNormalizeRoundsWeights(t *testing.T) {
	e := splitter(ServiceSplit{Weight: 33.333}, ServiceSplit{Weight: 66.6666})
	e.Normalize()
	if e.Splits[0].Weight != 33.33 || e.Splits[1].Weight != 66.67 {
		t.Errorf("got weights %v, %v, want 33.33, 66.67", e.Splits[0].Weight, e.Splits[1].Weight)
	}
}

func resolver(f func(e *ServiceResolverConfigEntry)) *ServiceResolverConfigEntry {
	e := &ServiceResolverConfigEntry{Name: "web", Subsets: map[string]ServiceResolverSubset{
		"v1": {Filter: "Service.Meta.version == v1"},
		"v2": {Filter: "Service.Meta.version == v2", OnlyPassing: true},
	}}
	f(e)
	return e
}

func TestValidateServiceResolver(t *testing.T) {
	none := func(*ServiceResolverConfigEntry) {}
	runValidate(t, []validateCase{
		{"valid subsets", resolver(func(e *ServiceResolverConfigEntry) {
			e.DefaultSubset = "v1"
			e.ConnectTimeout = decode.Duration(15 * time.Second)
		}), ""},
		{"valid failover to peer", resolver(func(e *ServiceResolverConfigEntry) {
			e.Failover = map[string]ServiceResolverFailover{"*": {Targets: []ServiceResolverFailoverTarget{{Peer: "cluster-01"}, {Service: "web", Datacenter: "dc2"}}}}
		}), ""},
		{"valid failover by subset", resolver(func(e *ServiceResolverConfigEntry) {
			e.Failover = map[string]ServiceResolverFailover{"v1": {ServiceSubset: "v2"}, "v2": {Datacenters: []string{"dc2", "dc_3"}}}
		}), ""},
		{"valid redirect to peer", resolver(func(e *ServiceResolverConfigEntry) {
			e.Redirect = &ServiceResolverRedirect{Service: "web", Peer: "east"}
		}), ""},
		{"valid redirect to own subset", resolver(func(e *ServiceResolverConfigEntry) {
			e.Redirect = &ServiceResolverRedirect{Service: "web", ServiceSubset: "v2"}
		}), ""},
		{"name required", &ServiceResolverConfigEntry{}, "Name: name is required"},
		{"bad subset name", resolver(func(e *ServiceResolverConfigEntry) { e.Subsets["V_3"] = ServiceResolverSubset{} }), `Subsets["V_3"]: subset name "V_3" is invalid: must be 63 characters or less`},
		{"empty subset name", resolver(func(e *ServiceResolverConfigEntry) { e.Subsets[""] = ServiceResolverSubset{} }), `Subsets[""]: subset name must not be empty`},
		{"default subset must exist", resolver(func(e *ServiceResolverConfigEntry) { e.DefaultSubset = "v3" }), `DefaultSubset: "v3" is not a valid subset`},
		{"redirect and failover", resolver(func(e *ServiceResolverConfigEntry) {
			e.Redirect = &ServiceResolverRedirect{Service: "api"}
			e.Failover = map[string]ServiceResolverFailover{"*": {Service: "api"}}
		}), "Redirect: Redirect and Failover cannot both be set"},
		{"empty redirect", resolver(func(e *ServiceResolverConfigEntry) { e.Redirect = &ServiceResolverRedirect{} }), "Redirect: redirect is empty"},
		{"redirect peer with datacenter", resolver(func(e *ServiceResolverConfigEntry) {
			e.Redirect = &ServiceResolverRedirect{Service: "api", Peer: "east", Datacenter: "dc2"}
		}), "Redirect.Peer: cannot be set with Datacenter"},
		{"redirect peer with partition", resolver(func(e *ServiceResolverConfigEntry) {
			e.Redirect = &ServiceResolverRedirect{Service: "api", Peer: "east", Partition: "p1"}
		}), "Redirect.Partition: cannot be set with Peer"},
		{"redirect peer with subset", resolver(func(e *ServiceResolverConfigEntry) {
			e.Redirect = &ServiceResolverRedirect{Service: "api", Peer: "east", ServiceSubset: "v1"}
		}), "Redirect.Peer: cannot be set with ServiceSubset"},
		{"redirect peer without service", resolver(func(e *ServiceResolverConfigEntry) { e.Redirect = &ServiceResolverRedirect{Peer: "east"} }), "Redirect.Peer: defined without Redirect.Service"},
		{"redirect bad peer", resolver(func(e *ServiceResolverConfigEntry) {
			e.Redirect = &ServiceResolverRedirect{Service: "api", Peer: "East"}
		}), `Redirect.Peer: "East" is not a valid peer name`},
		{"redirect sameness group with datacenter", resolver(func(e *ServiceResolverConfigEntry) {
			e.Redirect = &ServiceResolverRedirect{Service: "api", SamenessGroup: "sg", Datacenter: "dc2"}
		}), "Redirect.SamenessGroup: cannot be set with Datacenter"},
		{"redirect missing own subset", resolver(func(e *ServiceResolverConfigEntry) {
			e.Redirect = &ServiceResolverRedirect{Service: "web", ServiceSubset: "v9"}
		}), `Redirect.ServiceSubset: "v9" is not a valid subset of "web"`},
		{"failover key not a subset", resolver(func(e *ServiceResolverConfigEntry) {
			e.Failover = map[string]ServiceResolverFailover{"v9": {Service: "api"}}
		}), `Failover["v9"]: "v9" is not a valid subset; use a key of Subsets or "*"`},
		{"failover needs a target", resolver(func(e *ServiceResolverConfigEntry) {
			e.Failover = map[string]ServiceResolverFailover{"*": {}}
		}), `Failover["*"]: one of Service, ServiceSubset, Namespace, Targets, SamenessGroup, or Datacenters is required`},
		{"failover targets with datacenters", resolver(func(e *ServiceResolverConfigEntry) {
			e.Failover = map[string]ServiceResolverFailover{"*": {Datacenters: []string{"dc2"}, Targets: []ServiceResolverFailoverTarget{{Peer: "east"}}}}
		}), `Failover["*"].Targets: cannot be set with Datacenters`},
		{"failover targets with service", resolver(func(e *ServiceResolverConfigEntry) {
			e.Failover = map[string]ServiceResolverFailover{"*": {Service: "api", Targets: []ServiceResolverFailoverTarget{{Peer: "east"}}}}
		}), `Failover["*"].Targets: cannot be set with Service`},
		{"failover target peer with datacenter", resolver(func(e *ServiceResolverConfigEntry) {
			e.Failover = map[string]ServiceResolverFailover{"*": {Targets: []ServiceResolverFailoverTarget{{Peer: "east"}, {Peer: "west", Datacenter: "dc2"}}}}
		}), `Failover["*"].Targets[1].Peer: cannot be set with Datacenter`},
		{"failover target peer with partition", resolver(func(e *ServiceResolverConfigEntry) {
			e.Failover = map[string]ServiceResolverFailover{"*": {Targets: []ServiceResolverFailoverTarget{{Peer: "east", Partition: "p1"}}}}
		}), `Failover["*"].Targets[0].Partition: cannot be set with Peer`},
		{"failover target bad peer", resolver(func(e *ServiceResolverConfigEntry) {
			e.Failover = map[string]ServiceResolverFailover{"*": {Targets: []ServiceResolverFailoverTarget{{Peer: "*"}}}}
		}), `Failover["*"].Targets[0].Peer: cannot use wildcard '*' in peer`},
		{"failover empty target", resolver(func(e *ServiceResolverConfigEntry) {
			e.Failover = map[string]ServiceResolverFailover{"*": {Targets: []ServiceResolverFailoverTarget{{}}}}
		}), `Failover["*"].Targets[0]: target is empty`},
		{"failover empty datacenter", resolver(func(e *ServiceResolverConfigEntry) {
			e.Failover = map[string]ServiceResolverFailover{"*": {Datacenters: []string{""}}}
		}), `Failover["*"].Datacenters[0]: found empty datacenter`},
		{"failover sameness group with targets", resolver(func(e *ServiceResolverConfigEntry) {
			e.Failover = map[string]ServiceResolverFailover{"*": {SamenessGroup: "sg", Targets: []ServiceResolverFailoverTarget{{Peer: "east"}}}}
		}), `Failover["*"].SamenessGroup: cannot be set with Targets`},
		{"failover missing subset", resolver(func(e *ServiceResolverConfigEntry) {
			e.Failover = map[string]ServiceResolverFailover{"*": {ServiceSubset: "v9"}}
		}), `Failover["*"].ServiceSubset: "v9" is not a valid subset of "web"`},
		{"failover bad policy", resolver(func(e *ServiceResolverConfigEntry) {
			e.Failover = map[string]ServiceResolverFailover{"*": {Service: "api", Policy: &ServiceResolverFailoverPolicy{Mode: "random"}}}
		}), `Failover["*"].Policy.Mode: invalid failover policy mode "random"`},
		{"negative connect timeout", resolver(func(e *ServiceResolverConfigEntry) { e.ConnectTimeout = -1 }), "ConnectTimeout: must not be negative"},
		{"lb policy", resolver(func(e *ServiceResolverConfigEntry) { e.LoadBalancer = &LoadBalancer{Policy: "fastest"} }), `LoadBalancer.Policy: policy "fastest" is not supported`},
		{"lb ring hash config", resolver(func(e *ServiceResolverConfigEntry) {
			e.LoadBalancer = &LoadBalancer{Policy: "maglev", RingHashConfig: &RingHashConfig{MinimumRingSize: 1}}
		}), `LoadBalancer.RingHashConfig: RingHashConfig specified for incompatible load balancing policy "maglev"`},
		{"lb hash policies need hash policy", resolver(func(e *ServiceResolverConfigEntry) {
			e.LoadBalancer = &LoadBalancer{Policy: "random", HashPolicies: []HashPolicy{{SourceIP: true}}}
		}), "LoadBalancer.HashPolicies: HashPolicies specified for non-hash-based Policy"},
		{"lb hash field value", resolver(func(e *ServiceResolverConfigEntry) {
			e.LoadBalancer = &LoadBalancer{Policy: "ring_hash", HashPolicies: []HashPolicy{{Field: "header"}}}
		}), `LoadBalancer.HashPolicies[0].FieldValue: field "header" was specified without a FieldValue`},
		{"lb session cookie ttl", resolver(func(e *ServiceResolverConfigEntry) {
			e.LoadBalancer = &LoadBalancer{Policy: "ring_hash", HashPolicies: []HashPolicy{{Field: "cookie", FieldValue: "c", CookieConfig: &CookieConfig{Session: true, TTL: 5}}}}
		}), "LoadBalancer.HashPolicies[0].CookieConfig: a session cookie cannot have an associated TTL"},
		{"valid lb", resolver(func(e *ServiceResolverConfigEntry) {
			e.LoadBalancer = &LoadBalancer{Policy: "ring_hash", RingHashConfig: &RingHashConfig{MinimumRingSize: 1024, MaximumRingSize: 8192},
				HashPolicies: []HashPolicy{{Field: "cookie", FieldValue: "c", CookieConfig: &CookieConfig{TTL: decode.DurationNanos(time.Minute)}}, {SourceIP: true, Terminal: true}}}
		}), ""},
		{"meta", resolver(func(e *ServiceResolverConfigEntry) { e.Meta = bigMeta(1, 200, 0) }), "key is 200 bytes long"},
		{"no-op", resolver(none), ""},
	})
}

func TestValidateServiceDefaults(t *testing.T) {
	one := 1
	neg := -1
	big := uint32(101)
	runValidate(t, []validateCase{
		{"valid http", &ServiceConfigEntry{Name: "web", Protocol: "http"}, ""},
		{"valid protocol is lowercased", &ServiceConfigEntry{Name: "web", Protocol: "GRPC"}, ""},
		{"valid upstream config", &ServiceConfigEntry{Name: "web", UpstreamConfig: &UpstreamConfiguration{
			Overrides: []*UpstreamConfig{{Name: "db", Peer: "east", ConnectTimeoutMs: 1000, Limits: &UpstreamLimits{MaxConnections: &one}}},
			Defaults:  &UpstreamConfig{Protocol: "HTTP", PassiveHealthCheck: &PassiveHealthCheck{Interval: decode.DurationNanos(time.Second), MaxFailures: 3}},
		}}, ""},
		{"valid destination", &ServiceConfigEntry{Name: "ext", Destination: &DestinationConfig{Addresses: []string{"10.0.0.1", "api.example.com"}, Port: 443}}, ""},
		{"name required", &ServiceConfigEntry{}, "Name: name is required"},
		{"wildcard name", &ServiceConfigEntry{Name: "*"}, "Name: service-defaults name must be the name of a service, and not a wildcard"},
		{"bad protocol", &ServiceConfigEntry{Name: "web", Protocol: "udp"}, `Protocol: invalid protocol "udp"; use one of tcp, http, http2, grpc`},
		{"bad mode", &ServiceConfigEntry{Name: "web", Mode: "sidecar"}, `Mode: invalid proxy mode "sidecar"`},
		{"bad mesh gateway mode", &ServiceConfigEntry{Name: "web", MeshGateway: MeshGatewayConfig{Mode: "Local"}}, `MeshGateway.Mode: invalid mesh gateway mode "Local"`},
		{"bad mtls mode", &ServiceConfigEntry{Name: "web", MutualTLSMode: "loose"}, `MutualTLSMode: invalid mutual TLS mode "loose"`},
		{"bad balance", &ServiceConfigEntry{Name: "web", BalanceInboundConnections: "round"}, "BalanceInboundConnections: invalid value"},
		{"negative max inbound", &ServiceConfigEntry{Name: "web", MaxInboundConnections: -1}, "MaxInboundConnections: cannot be negative"},
		{"upstream and destination", &ServiceConfigEntry{Name: "web", UpstreamConfig: &UpstreamConfiguration{}, Destination: &DestinationConfig{Addresses: []string{"a"}, Port: 1}}, "Destination: UpstreamConfig and Destination are mutually exclusive"},
		{"override needs name", &ServiceConfigEntry{Name: "web", UpstreamConfig: &UpstreamConfiguration{Overrides: []*UpstreamConfig{{}}}}, "UpstreamConfig.Overrides[0].Name: name is required"},
		{"null override", &ServiceConfigEntry{Name: "web", UpstreamConfig: &UpstreamConfiguration{Overrides: []*UpstreamConfig{nil}}}, "UpstreamConfig.Overrides[0]: must not be null"},
		{"override wildcard", &ServiceConfigEntry{Name: "web", UpstreamConfig: &UpstreamConfiguration{Overrides: []*UpstreamConfig{{Name: "*"}}}}, "UpstreamConfig.Overrides[0].Name: wildcard name is not supported"},
		{"override bad peer", &ServiceConfigEntry{Name: "web", UpstreamConfig: &UpstreamConfiguration{Overrides: []*UpstreamConfig{{Name: "db", Peer: "-x"}}}}, `UpstreamConfig.Overrides[0].Peer: "-x" is not a valid peer name`},
		{"defaults with name", &ServiceConfigEntry{Name: "web", UpstreamConfig: &UpstreamConfiguration{Defaults: &UpstreamConfig{Name: "db"}}}, "UpstreamConfig.Defaults.Name: must be empty in Defaults"},
		{"negative limit", &ServiceConfigEntry{Name: "web", UpstreamConfig: &UpstreamConfiguration{Defaults: &UpstreamConfig{Limits: &UpstreamLimits{MaxPendingRequests: &neg}}}}, "UpstreamConfig.Defaults.Limits.MaxPendingRequests: cannot be negative"},
		{"ejection percent", &ServiceConfigEntry{Name: "web", UpstreamConfig: &UpstreamConfiguration{Defaults: &UpstreamConfig{PassiveHealthCheck: &PassiveHealthCheck{MaxEjectionPercent: &big}}}}, "UpstreamConfig.Defaults.PassiveHealthCheck.MaxEjectionPercent: must be a percentage between 0 and 100"},
		{"destination needs address", &ServiceConfigEntry{Name: "ext", Destination: &DestinationConfig{Port: 443}}, "Destination.Addresses: destination must contain at least one valid address"},
		{"destination duplicate address", &ServiceConfigEntry{Name: "ext", Destination: &DestinationConfig{Addresses: []string{"a.com", "a.com"}, Port: 443}}, `Destination.Addresses[1]: duplicate address "a.com"`},
		{"destination wildcard address", &ServiceConfigEntry{Name: "ext", Destination: &DestinationConfig{Addresses: []string{"*.a.com"}, Port: 443}}, `Destination.Addresses[0]: could not validate address "*.a.com"`},
		{"destination port", &ServiceConfigEntry{Name: "ext", Destination: &DestinationConfig{Addresses: []string{"a.com"}}}, "Destination.Port: invalid port number 0"},
		{"rate limits", &ServiceConfigEntry{Name: "web", RateLimits: &RateLimits{}}, "RateLimits: rate limiting is a Consul Enterprise feature"},
		{"extension name", &ServiceConfigEntry{Name: "web", EnvoyExtensions: []EnvoyExtension{{Required: true}}}, "EnvoyExtensions[0].Name: extension name is required"},
		{"expose path", &ServiceConfigEntry{Name: "web", Expose: ExposeConfig{Paths: []ExposePath{{Path: "metrics"}}}}, `Expose.Paths[0].Path: path "metrics" must start with '/'`},
		{"transparent proxy port", &ServiceConfigEntry{Name: "web", TransparentProxy: &TransparentProxyConfig{OutboundListenerPort: 70000}}, "TransparentProxy.OutboundListenerPort: port 70000 is out of range"},
		{"meta", &ServiceConfigEntry{Name: "web", Meta: bigMeta(1, 0, 600)}, "value is 600 bytes long"},
	})
}

func TestValidateProxyDefaults(t *testing.T) {
	runValidate(t, []validateCase{
		{"valid", &ProxyConfigEntry{Name: "global", Config: map[string]any{"protocol": "http"}}, ""},
		{"valid empty name", &ProxyConfigEntry{}, ""},
		{"valid access logs", &ProxyConfigEntry{AccessLogs: &AccessLogsConfig{Enabled: true, Type: "file", Path: "/var/log/envoy.log", JSONFormat: `{"a":"%START_TIME%"}`}}, ""},
		{"name must be global", &ProxyConfigEntry{Name: "web"}, `Name: invalid name "web", only "global" is supported`},
		{"protocol not a string", &ProxyConfigEntry{Config: map[string]any{"protocol": 3}}, `Config["protocol"]: protocol must be a string`},
		{"protocol invalid", &ProxyConfigEntry{Config: map[string]any{"protocol": "smtp"}}, `Config["protocol"]: invalid protocol "smtp"`},
		{"socket dir", &ProxyConfigEntry{Config: map[string]any{"envoy_hcp_metrics_bind_socket_dir": strings.Repeat("d", 71)}}, "length 71 exceeds max 70"},
		{"mode", &ProxyConfigEntry{Mode: "x"}, `Mode: invalid proxy mode "x"`},
		{"mesh gateway", &ProxyConfigEntry{MeshGateway: MeshGatewayConfig{Mode: "both"}}, `MeshGateway.Mode: invalid mesh gateway mode "both"; use "none", "local", "remote" or leave it empty`},
		{"access log type", &ProxyConfigEntry{AccessLogs: &AccessLogsConfig{Type: "syslog"}}, `AccessLogs.Type: invalid access log type "syslog"`},
		{"access log formats", &ProxyConfigEntry{AccessLogs: &AccessLogsConfig{JSONFormat: "{}", TextFormat: "x"}}, "AccessLogs: cannot specify both JSONFormat and TextFormat"},
		{"access log path without file", &ProxyConfigEntry{AccessLogs: &AccessLogsConfig{Type: "stdout", Path: "/x"}}, "AccessLogs.Path: path is only valid for file type access logs"},
		{"access log file without path", &ProxyConfigEntry{AccessLogs: &AccessLogsConfig{Type: "file"}}, "AccessLogs.Path: path must be specified"},
		{"access log bad json", &ProxyConfigEntry{AccessLogs: &AccessLogsConfig{JSONFormat: "{"}}, "AccessLogs.JSONFormat: invalid access log JSON format"},
		{"namespace", &ProxyConfigEntry{Namespace: "ns1"}, "Namespace: proxy-defaults are partition-scoped"},
		{"failover policy", &ProxyConfigEntry{FailoverPolicy: &ServiceResolverFailoverPolicy{Mode: "x"}}, "FailoverPolicy.Mode: invalid failover policy mode"},
		{"prioritize by locality", &ProxyConfigEntry{PrioritizeByLocality: &ServiceResolverPrioritizeByLocality{Mode: "x"}}, "PrioritizeByLocality.Mode: invalid prioritize by locality mode"},
	})
}

func TestValidateMesh(t *testing.T) {
	runValidate(t, []validateCase{
		{"valid", &MeshConfigEntry{Peering: &PeeringMeshConfig{PeerThroughMeshGateways: true}, TLS: &MeshTLSConfig{Incoming: &MeshDirectionalTLSConfig{TLSMinVersion: "TLSv1_2", TLSMaxVersion: "TLSv1_3"}}}, ""},
		{"valid name", &MeshConfigEntry{Name: "mesh"}, ""},
		{"name must be mesh", &MeshConfigEntry{Name: "global"}, `Name: invalid name "global", only "mesh" is supported`},
		{"bad tls version", &MeshConfigEntry{TLS: &MeshTLSConfig{Outgoing: &MeshDirectionalTLSConfig{TLSMinVersion: "TLS1.2"}}}, `TLS.Outgoing.TLSMinVersion: "TLS1.2" is not a valid TLS version`},
		{"max below min", &MeshConfigEntry{TLS: &MeshTLSConfig{Incoming: &MeshDirectionalTLSConfig{TLSMinVersion: "TLSv1_3", TLSMaxVersion: "TLSv1_2"}}}, "TLS.Incoming: configuring max version TLSv1_2 less than the configured min version TLSv1_3 is invalid"},
		{"cipher suites with tls 1.3", &MeshConfigEntry{TLS: &MeshTLSConfig{Incoming: &MeshDirectionalTLSConfig{TLSMinVersion: "TLSv1_3", CipherSuites: []string{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}}}}, "TLS.Incoming.CipherSuites: configuring CipherSuites is only applicable"},
		{"request normalization", &MeshConfigEntry{HTTP: &MeshHTTPConfig{Incoming: &MeshDirectionalHTTPConfig{RequestNormalization: &RequestNormalizationMeshConfig{HeadersWithUnderscoresAction: "drop"}}}},
			`HTTP.Incoming.RequestNormalization.HeadersWithUnderscoresAction: no matching HeadersWithUnderscoresAction value found for "drop"`},
		{"meta", &MeshConfigEntry{Meta: bigMeta(70, 0, 0)}, "Meta: at most 64 keys may be set, got 70; remove 6"},
	})
}

func TestValidateTenancy(t *testing.T) {
	runValidate(t, []validateCase{
		{"valid namespace", &ServiceConfigEntry{Name: "web", Namespace: "team-a", Partition: "p1"}, ""},
		{"bad namespace", &ServiceConfigEntry{Name: "web", Namespace: "team a"}, `Namespace: "team a" is not a valid name`},
		{"wildcard partition", &ServiceRouterConfigEntry{Name: "web", Partition: "*"}, "Partition: cannot use wildcard '*' here"},
		{"wildcard namespace on router", &ServiceRouterConfigEntry{Name: "web", Namespace: "*"}, "Namespace: cannot use wildcard '*' here"},
	})
}

func TestL7Protocol(t *testing.T) {
	tests := []struct {
		protocol string
		want     bool
	}{
		{"http", true}, {"http2", true}, {"grpc", true},
		{"tcp", false}, {"", false}, {"HTTP", false}, {"udp", false},
	}
	for _, tt := range tests {
		t.Run(tt.protocol, func(t *testing.T) {
			if got := L7Protocol(tt.protocol); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
