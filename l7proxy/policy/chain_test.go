package policy

import (
	"math"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/internal/decode"
)

// entries returns a Lookup over the given entries.
func entries(es ...configentry.Entry) Lookup {
	m := make(map[[2]string]configentry.Entry, len(es))
	for _, e := range es {
		m[[2]string{e.GetKind(), e.GetName()}] = e
	}
	return func(kind, name string) configentry.Entry { return m[[2]string{kind, name}] }
}

// seq returns a rnd that yields the given values in turn, cycling.
func seq(vals ...float64) func() float64 {
	i := 0
	return func() float64 {
		v := vals[i%len(vals)]
		i++
		return v
	}
}

func router(name string, routes ...configentry.ServiceRoute) *configentry.ServiceRouterConfigEntry {
	e := &configentry.ServiceRouterConfigEntry{Name: name, Routes: routes}
	e.Normalize()
	return e
}

func route(m configentry.ServiceRouteHTTPMatch, d *configentry.ServiceRouteDestination) configentry.ServiceRoute {
	return configentry.ServiceRoute{Match: &configentry.ServiceRouteMatch{HTTP: &m}, Destination: d}
}

func to(service string) *configentry.ServiceRouteDestination {
	return &configentry.ServiceRouteDestination{Service: service}
}

func splitter(name string, splits ...configentry.ServiceSplit) *configentry.ServiceSplitterConfigEntry {
	e := &configentry.ServiceSplitterConfigEntry{Name: name, Splits: splits}
	e.Normalize()
	return e
}

func TestRouteRequestMatches(t *testing.T) {
	lookup := entries(router("web",
		route(configentry.ServiceRouteHTTPMatch{PathExact: "/exact"}, to("exact")),
		route(configentry.ServiceRouteHTTPMatch{PathExact: "/ExactCI", CaseInsensitive: true}, to("exact-ci")),
		route(configentry.ServiceRouteHTTPMatch{PathPrefix: "/prefix"}, to("prefix")),
		route(configentry.ServiceRouteHTTPMatch{PathPrefix: "/CI/", CaseInsensitive: true}, to("prefix-ci")),
		route(configentry.ServiceRouteHTTPMatch{PathRegex: "/re/[a-z]+"}, to("regex")),
		route(configentry.ServiceRouteHTTPMatch{PathRegex: "/rci/[a-z]+", CaseInsensitive: true}, to("regex-ci")),
		route(configentry.ServiceRouteHTTPMatch{PathPrefix: "/m", Methods: []string{"put", "DELETE"}}, to("methods")),
		route(configentry.ServiceRouteHTTPMatch{Header: []configentry.ServiceRouteHTTPMatchHeader{{Name: "x-exact", Exact: "1"}}}, to("h-exact")),
		route(configentry.ServiceRouteHTTPMatch{Header: []configentry.ServiceRouteHTTPMatchHeader{{Name: "X-Prefix", Prefix: "ab"}}}, to("h-prefix")),
		route(configentry.ServiceRouteHTTPMatch{Header: []configentry.ServiceRouteHTTPMatchHeader{{Name: "X-Suffix", Suffix: "yz"}}}, to("h-suffix")),
		route(configentry.ServiceRouteHTTPMatch{Header: []configentry.ServiceRouteHTTPMatchHeader{{Name: "X-Regex", Regex: "[0-9]+"}}}, to("h-regex")),
		route(configentry.ServiceRouteHTTPMatch{Header: []configentry.ServiceRouteHTTPMatchHeader{{Name: "X-Present", Present: true}}}, to("h-present")),
		route(configentry.ServiceRouteHTTPMatch{PathPrefix: "/inv", Header: []configentry.ServiceRouteHTTPMatchHeader{{Name: "X-Env", Exact: "prod", Invert: true}}}, to("h-invert")),
		route(configentry.ServiceRouteHTTPMatch{QueryParam: []configentry.ServiceRouteHTTPMatchQueryParam{{Name: "q", Exact: "1"}}}, to("q-exact")),
		route(configentry.ServiceRouteHTTPMatch{QueryParam: []configentry.ServiceRouteHTTPMatchQueryParam{{Name: "r", Regex: "[a-c]+"}}}, to("q-regex")),
		route(configentry.ServiceRouteHTTPMatch{QueryParam: []configentry.ServiceRouteHTTPMatchQueryParam{{Name: "p", Present: true}}}, to("q-present")),
		route(configentry.ServiceRouteHTTPMatch{PathPrefix: "/both", Methods: []string{"GET"}, Header: []configentry.ServiceRouteHTTPMatchHeader{{Name: "X-A", Exact: "1"}}}, to("all-of")),
		configentry.ServiceRoute{Match: &configentry.ServiceRouteMatch{HTTP: &configentry.ServiceRouteHTTPMatch{PathPrefix: "/nodest"}}},
		configentry.ServiceRoute{Match: &configentry.ServiceRouteMatch{HTTP: &configentry.ServiceRouteHTTPMatch{PathPrefix: "/subset"}}, Destination: &configentry.ServiceRouteDestination{ServiceSubset: "v2"}},
	))
	tests := []struct {
		name  string
		r     *http.Request
		want  string
		index int
	}{
		{"exact", req("GET", "/exact"), "exact", 0},
		{"exact is exact", req("GET", "/exact/x"), "web", -1},
		{"exact is case-sensitive", req("GET", "/EXACT"), "web", -1},
		{"exact case-insensitive", req("GET", "/exactci"), "exact-ci", 1},
		{"prefix", req("GET", "/prefixes"), "prefix", 2},
		{"prefix ignores query", req("GET", "/prefix?x=1"), "prefix", 2},
		{"prefix case-insensitive", req("GET", "/ci/x"), "prefix-ci", 3},
		{"regex", req("GET", "/re/abc"), "regex", 4},
		{"regex is a full match", req("GET", "/re/abc/d"), "web", -1},
		{"regex is case-sensitive", req("GET", "/re/ABC"), "web", -1},
		{"regex case-insensitive", req("GET", "/RCI/ABC"), "regex-ci", 5},
		{"method", req("PUT", "/m"), "methods", 6},
		{"method not listed", req("GET", "/m"), "web", -1},
		{"header exact", req("GET", "/", "X-Exact", "1"), "h-exact", 7},
		{"header prefix", req("GET", "/", "X-Prefix", "abc"), "h-prefix", 8},
		{"header suffix", req("GET", "/", "X-Suffix", "xyz"), "h-suffix", 9},
		{"header regex", req("GET", "/", "X-Regex", "42"), "h-regex", 10},
		{"header regex full match", req("GET", "/", "X-Regex", "42a"), "web", -1},
		{"header present", req("GET", "/", "X-Present", ""), "h-present", 11},
		{"header inverted, other value", req("GET", "/inv", "X-Env", "dev"), "h-invert", 12},
		{"header inverted, same value", req("GET", "/inv", "X-Env", "prod"), "web", -1},
		{"header inverted, absent", req("GET", "/inv"), "web", -1},
		{"query exact", req("GET", "/?q=1"), "q-exact", 13},
		{"query exact uses the first value", req("GET", "/?q=2&q=1"), "web", -1},
		{"query regex", req("GET", "/?r=abc"), "q-regex", 14},
		{"query regex full match", req("GET", "/?r=abcd"), "web", -1},
		{"query present", req("GET", "/?p"), "q-present", 15},
		{"all criteria must match", req("GET", "/both", "X-A", "1"), "all-of", 16},
		{"all criteria must match: method", req("POST", "/both", "X-A", "1"), "web", -1},
		{"route without destination goes to the router's service", req("GET", "/nodest"), "web", 17},
		{"no match", req("GET", "/elsewhere"), "web", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []*Cache{nil, NewCache()} {
				rt, err := c.RouteRequest("web", tt.r, lookup, seq(0))
				if err != nil {
					t.Fatal(err)
				}
				if rt.Target.Service != tt.want || rt.RouteIndex != tt.index {
					t.Errorf("got %s (route %d), want %s (route %d)", rt.Target, rt.RouteIndex, tt.want, tt.index)
				}
			}
		})
	}
	rt, err := RouteRequest("web", req("GET", "/subset"), lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Target{Service: "web", Subset: "v2"}); rt.Target != want {
		t.Errorf("got %v, want %v", rt.Target, want)
	}
}

func TestRouteRequestDestination(t *testing.T) {
	reqMods := &configentry.HTTPHeaderModifiers{Set: map[string]string{"X-Route": "1"}}
	lookup := entries(router("web",
		route(configentry.ServiceRouteHTTPMatch{PathPrefix: "/api/"}, &configentry.ServiceRouteDestination{
			Service: "api", ServiceSubset: "v1", Namespace: "default", PrefixRewrite: "/",
			RequestTimeout: decode.Duration(3 * time.Second), IdleTimeout: decode.Duration(time.Minute),
			NumRetries: 2, RetryOnConnectFailure: true, RetryOnStatusCodes: []uint32{503}, RetryOn: []string{"reset"},
			RequestHeaders: reqMods,
		}),
		route(configentry.ServiceRouteHTTPMatch{PathExact: "/Old", CaseInsensitive: true}, &configentry.ServiceRouteDestination{PrefixRewrite: "/new"}),
		route(configentry.ServiceRouteHTTPMatch{PathPrefix: "/keep"}, &configentry.ServiceRouteDestination{Namespace: "team"}),
	))
	rt, err := RouteRequest("web", req("GET", "/api/users"), lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Route{
		Target:        Target{Service: "api", Subset: "v1"},
		PrefixRewrite: "/", MatchedPrefix: "/api/",
		RequestTimeout: 3 * time.Second, IdleTimeout: time.Minute,
		NumRetries: 2, RetryOnConnectFailure: true, RetryOnStatusCodes: []uint32{503}, RetryOn: []string{"reset"},
		RequestHeaders: reqMods,
	}
	if !reflect.DeepEqual(rt, want) {
		t.Errorf("got %+v\nwant %+v", rt, want)
	}
	if got := rt.RewritePath("/api/users"); got != "/users" {
		t.Errorf("RewritePath = %q, want /users", got)
	}

	rt, err = RouteRequest("web", req("GET", "/OLD"), lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rt.Target.Service != "web" || rt.MatchedPrefix != "/Old" || rt.RewritePath("/OLD") != "/new" {
		t.Errorf("got %+v, rewrite %q", rt, rt.RewritePath("/OLD"))
	}
	rt, err = RouteRequest("web", req("GET", "/keep"), lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rt.Target != (Target{Service: "web", Namespace: "team"}) || rt.PrefixRewrite != "" || rt.RewritePath("/keep") != "/keep" {
		t.Errorf("got %+v", rt)
	}
}

func TestRouteRequestErrors(t *testing.T) {
	tests := []struct {
		name   string
		lookup Lookup
		want   string
	}{
		{
			"bad path regex",
			entries(router("web", route(configentry.ServiceRouteHTTPMatch{PathRegex: "(["}, nil))),
			`service-router "web" Routes[0].Match.HTTP.PathRegex: invalid regular expression "(["`,
		},
		{
			"bad header regex",
			entries(router("web",
				route(configentry.ServiceRouteHTTPMatch{PathPrefix: "/x"}, nil),
				route(configentry.ServiceRouteHTTPMatch{Header: []configentry.ServiceRouteHTTPMatchHeader{{Name: "a", Regex: "a{2,1}"}}}, nil))),
			`service-router "web" Routes[1].Match.HTTP.Header[0].Regex: invalid regular expression "a{2,1}"`,
		},
		{
			"bad query regex",
			entries(router("web", route(configentry.ServiceRouteHTTPMatch{QueryParam: []configentry.ServiceRouteHTTPMatchQueryParam{{Name: "a", Regex: "("}}}, nil))),
			`service-router "web" Routes[0].Match.HTTP.QueryParam[0].Regex`,
		},
		{
			"splitter loop",
			entries(
				splitter("web", configentry.ServiceSplit{Weight: 100, Service: "a"}),
				splitter("a", configentry.ServiceSplit{Weight: 50, Service: "b"}, configentry.ServiceSplit{Weight: 50}),
				splitter("b", configentry.ServiceSplit{Weight: 100, Service: "web"}),
			),
			`service-splitter "web": circular reference: web -> a -> b -> web`,
		},
		{
			"no positive weight",
			entries(splitter("web", configentry.ServiceSplit{Weight: 0, ServiceSubset: "v1"})),
			`service-splitter "web": no split has a positive weight`,
		},
		{
			"wrong entry type",
			func(kind, name string) configentry.Entry {
				if kind == configentry.ServiceRouter {
					return splitter(name)
				}
				return nil
			},
			`service-router "web": lookup returned a *configentry.ServiceSplitterConfigEntry`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RouteRequest("web", req("GET", "/"), tt.lookup, seq(0.5))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
	if _, err := RouteRequest("web", req("GET", "/"), entries(splitter("web", configentry.ServiceSplit{Weight: 100})), nil); err == nil {
		t.Error("nil rnd with a splitter: no error")
	}
}

// distribution routes n requests with rnd = (i+0.5)/n and counts the
// targets.
func distribution(t *testing.T, c *Cache, service string, lookup Lookup, n int) map[Target]int {
	t.Helper()
	counts := make(map[Target]int)
	for i := 0; i < n; i++ {
		u := (float64(i) + 0.5) / float64(n)
		rt, err := c.RouteRequest(service, req("GET", "/"), lookup, func() float64 { return u })
		if err != nil {
			t.Fatal(err)
		}
		counts[rt.Target]++
	}
	return counts
}

func TestRouteRequestSplitterWeights(t *testing.T) {
	lookup := entries(splitter("web",
		configentry.ServiceSplit{Weight: 10, ServiceSubset: "v1"},
		configentry.ServiceSplit{Weight: 0, ServiceSubset: "never"},
		configentry.ServiceSplit{Weight: 89.99, ServiceSubset: "v2"},
		configentry.ServiceSplit{Weight: 0.01, Service: "api"},
	))
	got := distribution(t, NewCache(), "web", lookup, 10000)
	want := map[Target]int{
		{Service: "web", Subset: "v1"}: 1000,
		{Service: "web", Subset: "v2"}: 8999,
		{Service: "api"}:               1,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	// Out-of-range draws still pick a split.
	for _, u := range []float64{-1, 1, 2, math.NaN(), math.Inf(1)} {
		if _, err := RouteRequest("web", req("GET", "/"), lookup, seq(u)); err != nil {
			t.Errorf("rnd %v: %v", u, err)
		}
	}
}

func TestRouteRequestNestedSplitter(t *testing.T) {
	lookup := entries(
		router("web", route(configentry.ServiceRouteHTTPMatch{PathPrefix: "/checkout"}, &configentry.ServiceRouteDestination{
			Service: "checkout", RequestHeaders: &configentry.HTTPHeaderModifiers{Set: map[string]string{"X-Level": "route"}, Remove: []string{"X-Outer"}},
		})),
		splitter("checkout",
			configentry.ServiceSplit{Weight: 50, ServiceSubset: "v1"},
			configentry.ServiceSplit{Weight: 50, Service: "cart", RequestHeaders: &configentry.HTTPHeaderModifiers{
				Set: map[string]string{"X-Outer": "1", "X-Level": "outer"}, Add: map[string]string{"X-Trace": "outer"},
			}, ResponseHeaders: &configentry.HTTPHeaderModifiers{Set: map[string]string{"X-Resp": "outer"}}},
		),
		splitter("cart",
			configentry.ServiceSplit{Weight: 50, ServiceSubset: "old", RequestHeaders: &configentry.HTTPHeaderModifiers{
				Set: map[string]string{"X-Level": "inner"}, Add: map[string]string{"X-Trace": "inner"},
			}, ResponseHeaders: &configentry.HTTPHeaderModifiers{Set: map[string]string{"X-Resp": "inner"}}},
			configentry.ServiceSplit{Weight: 50}, // cart itself: not a loop
		),
	)
	c := NewCache()
	got := make(map[Target]int)
	for i := 0; i < 100; i++ {
		u := (float64(i) + 0.5) / 100
		r := req("GET", "/checkout")
		rt, err := c.RouteRequest("web", r, lookup, func() float64 { return u })
		if err != nil {
			t.Fatal(err)
		}
		got[rt.Target]++
		if rt.Target == (Target{Service: "cart", Subset: "old"}) {
			h := http.Header{"X-Outer": {"from-client"}}
			ApplyHeaderModifiers(h, rt.RequestHeaders)
			// outer split, then inner split, then the route.
			want := http.Header{"X-Level": {"route"}, "X-Trace": {"outer,inner"}}
			if !reflect.DeepEqual(h, want) {
				t.Errorf("request headers: got %v, want %v", h, want)
			}
			resp := http.Header{}
			ApplyHeaderModifiers(resp, rt.ResponseHeaders)
			if got := resp.Get("X-Resp"); got != "outer" {
				t.Errorf("response header X-Resp = %q, want outer (the outer split's applies last)", got)
			}
		}
	}
	want := map[Target]int{
		{Service: "checkout", Subset: "v1"}: 50,
		{Service: "cart", Subset: "old"}:    25,
		{Service: "cart"}:                   25,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestRouteRequestSubsetSkipsSplitter(t *testing.T) {
	lookup := entries(
		router("web", route(configentry.ServiceRouteHTTPMatch{PathPrefix: "/v2"}, &configentry.ServiceRouteDestination{ServiceSubset: "v2"})),
		splitter("web", configentry.ServiceSplit{Weight: 100, Service: "other"}),
	)
	rt, err := RouteRequest("web", req("GET", "/v2"), lookup, seq(0))
	if err != nil {
		t.Fatal(err)
	}
	if rt.Target != (Target{Service: "web", Subset: "v2"}) {
		t.Errorf("got %v, want v2.web", rt.Target)
	}
	rt, err = RouteRequest("web", req("GET", "/"), lookup, seq(0))
	if err != nil {
		t.Fatal(err)
	}
	if rt.Target != (Target{Service: "other"}) {
		t.Errorf("got %v, want other (the default route goes through the splitter)", rt.Target)
	}
}

func TestRouteRequestNoEntries(t *testing.T) {
	for _, lookup := range []Lookup{nil, entries()} {
		rt, err := RouteRequest("web", req("GET", "/"), lookup, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(rt, Route{Target: Target{Service: "web"}, RouteIndex: -1}) {
			t.Errorf("got %+v", rt)
		}
	}
}

func TestRouteRequestOddRequests(t *testing.T) {
	lookup := entries(router("web",
		route(configentry.ServiceRouteHTTPMatch{PathExact: "/x"}, to("x")),
		route(configentry.ServiceRouteHTTPMatch{PathPrefix: "/", Methods: []string{"GET"}, Header: []configentry.ServiceRouteHTTPMatchHeader{{Name: "X-A", Present: true, Invert: true}}}, to("root")),
	))
	for _, r := range []*http.Request{nil, {}, {Method: "GET", URL: nil, Header: nil}} {
		rt, err := RouteRequest("web", r, lookup, nil)
		if err != nil {
			t.Fatal(err)
		}
		if rt.Target.Service != "root" {
			t.Errorf("request %+v: got %v, want root (an empty request is GET /)", r, rt.Target)
		}
	}
	in := mustCompile(t, ixn("web", l7src("a", "", perm(allow, configentry.IntentionHTTPPermission{PathExact: "/", Methods: []string{"GET"}}))))
	if d := in.Authorize("web", Caller{Service: "a"}, &http.Request{}); !d.Allow {
		t.Errorf("empty request: got %+v, want allow (GET /)", d)
	}
}

func TestRouteRequestCachesRegexps(t *testing.T) {
	lookup := entries(router("web",
		route(configentry.ServiceRouteHTTPMatch{PathRegex: "/a+"}, nil),
		route(configentry.ServiceRouteHTTPMatch{PathRegex: "/b+", CaseInsensitive: true}, nil),
	))
	c := NewCache()
	for i := 0; i < 3; i++ {
		if _, err := c.RouteRequest("web", req("GET", "/c"), lookup, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := c.Len(); n != 2 {
		t.Errorf("cache holds %d regexps, want 2", n)
	}
}

func TestTargetString(t *testing.T) {
	tests := []struct {
		t    Target
		want string
	}{
		{Target{Service: "web"}, "web"},
		{Target{Service: "web", Subset: "v1", Namespace: "ns"}, "v1.web.ns"},
		{Target{Service: "web", Peer: "east"}, "web@peer:east"},
		{Target{Service: "web", Datacenter: "dc2"}, "web@dc:dc2"},
	}
	for _, tt := range tests {
		if got := tt.t.String(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}
