package policy

import (
	"testing"

	"github.com/peerd/peerd/catalog/configentry"
)

func BenchmarkAuthorizeL7(b *testing.B) {
	in := fuzzIntentions(b)
	caller := Caller{Service: "web", Peer: "a"}
	r := req("GET", "/api/v2/orders/42", "X-Env", "prod", "User-Agent", "bench")
	b.ReportAllocs()
	for b.Loop() {
		if d := in.Authorize("billing", caller, r); !d.Allow {
			b.Fatalf("got %+v", d)
		}
	}
}

func BenchmarkRouteRequest(b *testing.B) {
	lookup := entries(
		router("web",
			route(configentry.ServiceRouteHTTPMatch{PathExact: "/healthz"}, to("health")),
			route(configentry.ServiceRouteHTTPMatch{PathRegex: "/admin/.*", CaseInsensitive: true}, to("admin")),
			route(configentry.ServiceRouteHTTPMatch{PathPrefix: "/api/", Header: []configentry.ServiceRouteHTTPMatchHeader{{Name: "X-Canary", Exact: "1"}}}, to("api-canary")),
			route(configentry.ServiceRouteHTTPMatch{PathPrefix: "/api/", QueryParam: []configentry.ServiceRouteHTTPMatchQueryParam{{Name: "v", Regex: "[0-9]+"}}}, &configentry.ServiceRouteDestination{
				Service: "api", PrefixRewrite: "/", RequestHeaders: &configentry.HTTPHeaderModifiers{Set: map[string]string{"X-Routed": "1"}},
			}),
		),
		splitter("api",
			configentry.ServiceSplit{Weight: 90, ServiceSubset: "v1"},
			configentry.ServiceSplit{Weight: 10, ServiceSubset: "v2", RequestHeaders: &configentry.HTTPHeaderModifiers{Add: map[string]string{"X-Version": "2"}}},
		),
	)
	r := req("GET", "/api/orders?v=3")
	for _, bc := range []struct {
		name  string
		cache *Cache
	}{{"cached", NewCache()}, {"uncached", nil}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			u := 0.0
			rnd := func() float64 {
				u += 0.07
				if u >= 1 {
					u -= 1
				}
				return u
			}
			for b.Loop() {
				rt, err := bc.cache.RouteRequest("web", r, lookup, rnd)
				if err != nil || rt.Target.Service != "api" {
					b.Fatalf("got %+v, %v", rt, err)
				}
			}
		})
	}
}

func BenchmarkFilterMatch(b *testing.B) {
	in := instance("n1", "a", "v1", "primary", "v2")
	for _, expr := range []string{`Service.Meta.version == v1 and Service.Tags contains "v2"`, `Node.Node matches "^n[0-9]+$"`} {
		f, err := CompileFilter(expr)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(expr, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !f.Match(in) {
					b.Fatal("no match")
				}
			}
		})
	}
}
