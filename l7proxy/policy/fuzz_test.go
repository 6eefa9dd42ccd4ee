package policy

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
)

func FuzzCompileFilter(f *testing.F) {
	for _, seed := range []string{
		`Service.Tags contains "v2"`,
		`Service.Meta.version == v1`,
		`Node.Meta.zone == a and not (Service.Port == 80)`,
		`Node.Node matches "^n[0-9]+$" or Service.ID not matches "x"`,
		`any Checks as c { c.Status == passing }`,
		`all Service.Meta as k, v { v != "" }`,
		`Service.Tags is empty`,
		`"x" in Service.Tags`,
		`Service.Meta["a.b"] == c`,
		`/Service/Meta/version == v1`,
		`(`,
		`Node.Node matches "(["`,
		"",
	} {
		f.Add(seed)
	}
	instances := []state.CheckServiceNode{
		instance("n1", "a", "v1", "v2"),
		{},
		{Node: &state.Node{}, Service: &state.Service{}, Checks: []*state.HealthCheck{nil}},
	}
	f.Fuzz(func(t *testing.T, expr string) {
		flt, err := CompileFilter(expr)
		if err != nil {
			if flt != nil {
				t.Fatalf("CompileFilter(%q) returned a filter and an error", expr)
			}
			return
		}
		for _, in := range instances {
			ok, err := flt.Eval(in)
			if err != nil && ok {
				t.Fatalf("Eval(%q) = true with error %v", expr, err)
			}
		}
	})
}

// fuzzIntentions is a fixed set covering every kind of L7 match.
func fuzzIntentions(t testing.TB) *Intentions {
	return mustCompile(t,
		ixn("billing",
			l7src("web", "a",
				perm(deny, configentry.IntentionHTTPPermission{PathPrefix: "/admin", Methods: []string{"POST", "DELETE"}}),
				perm(allow, configentry.IntentionHTTPPermission{PathExact: "/healthz"}),
				perm(allow, configentry.IntentionHTTPPermission{PathRegex: "/api/v[0-9]+/.*", Header: []configentry.IntentionHTTPHeaderPermission{
					{Name: "X-Env", Exact: "PROD", IgnoreCase: true},
					{Name: "X-Debug", Present: true, Invert: true},
				}}),
				perm(allow, configentry.IntentionHTTPPermission{Header: []configentry.IntentionHTTPHeaderPermission{
					{Name: "X-Pre", Prefix: "ab", IgnoreCase: true},
					{Name: "X-Suf", Suffix: "YZ", Invert: true},
					{Name: "X-Con", Contains: "mid", IgnoreCase: true},
					{Name: "X-Re", Regex: "[0-9]+", Invert: true},
				}}),
			),
			src("*", "a", deny),
			src("web", "", allow),
		),
		ixn("*", src("*", "b", allow)),
	)
}

func FuzzAuthorize(f *testing.F) {
	f.Add("/api/v1/x", "GET", "X-Env", "prod", "q=1", "a")
	f.Add("/admin", "POST", "X-Debug", "1", "", "a")
	f.Add("/healthz", "", "X-Pre", "ABc", "", "b")
	f.Add("", "get", "", "", "%zz", "")
	f.Add("/\x00\xff", "M\x00", "X-Con", "aMIDb", "a=%", "a")
	in := fuzzIntentions(f)
	lookup := entries(
		router("billing",
			route(configentry.ServiceRouteHTTPMatch{PathRegex: "/api/v[0-9]+/.*", CaseInsensitive: true, Header: []configentry.ServiceRouteHTTPMatchHeader{{Name: "X-Env", Regex: "p.*", Invert: true}}}, to("api")),
			route(configentry.ServiceRouteHTTPMatch{PathPrefix: "/ADMIN", CaseInsensitive: true, QueryParam: []configentry.ServiceRouteHTTPMatchQueryParam{{Name: "q", Regex: "[0-9]+"}}}, &configentry.ServiceRouteDestination{PrefixRewrite: "/"}),
		),
		splitter("api", configentry.ServiceSplit{Weight: 50, ServiceSubset: "v1"}, configentry.ServiceSplit{Weight: 50, Service: "api2"}),
	)
	c := NewCache()
	f.Fuzz(func(t *testing.T, path, method, hname, hvalue, rawQuery, peer string) {
		r := &http.Request{
			Method: method,
			URL:    &url.URL{Path: path, RawQuery: rawQuery},
			Header: http.Header{},
			Host:   hvalue,
		}
		if hname != "" {
			r.Header[hname] = []string{hvalue}
			r.Header.Add(hname, hvalue)
		}
		caller := Caller{Service: "web", Peer: peer}
		for _, dst := range []string{"billing", "other"} {
			d := in.Authorize(dst, caller, r)
			if d.Reason == "" {
				t.Fatal("empty reason")
			}
			if in.NeedsL7(dst, caller) {
				if l4 := in.Authorize(dst, caller, nil); l4.Allow {
					t.Fatalf("L4 decision allowed a source with permissions: %+v", l4)
				}
			}
		}
		rt, err := c.RouteRequest("billing", r, lookup, func() float64 { return float64(len(path)%10) / 10 })
		if err != nil {
			t.Fatalf("RouteRequest: %v", err)
		}
		_ = rt.RewritePath(path)
	})
}
