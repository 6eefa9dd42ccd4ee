package policy

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/peerd/peerd/catalog/configentry"
)

// req builds a request without net/http's parsing, so tests (and fuzzing)
// control every field.
func req(method, target string, headers ...string) *http.Request {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		panic(err)
	}
	r := &http.Request{Method: method, URL: u, Header: make(http.Header), Host: "billing.example"}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	return r
}

func ixn(name string, srcs ...*configentry.SourceIntention) *configentry.ServiceIntentionsConfigEntry {
	e := &configentry.ServiceIntentionsConfigEntry{Kind: configentry.ServiceIntentions, Name: name, Sources: srcs}
	e.Normalize()
	return e
}

func src(name, peer string, action configentry.IntentionAction) *configentry.SourceIntention {
	return &configentry.SourceIntention{Name: name, Peer: peer, Action: action}
}

func l7src(name, peer string, perms ...*configentry.IntentionPermission) *configentry.SourceIntention {
	return &configentry.SourceIntention{Name: name, Peer: peer, Permissions: perms}
}

func perm(action configentry.IntentionAction, h configentry.IntentionHTTPPermission) *configentry.IntentionPermission {
	return &configentry.IntentionPermission{Action: action, HTTP: &h}
}

const (
	allow = configentry.IntentionActionAllow
	deny  = configentry.IntentionActionDeny
)

func mustCompile(t testing.TB, entries ...*configentry.ServiceIntentionsConfigEntry) *Intentions {
	t.Helper()
	in, err := CompileIntentions(entries)
	if err != nil {
		t.Fatalf("CompileIntentions: %v", err)
	}
	return in
}

func TestAuthorizeL4(t *testing.T) {
	in := mustCompile(t,
		ixn("billing",
			src("*", "a", deny),
			src("web", "a", allow),
			src("web", "", allow),
			src("api", "b", allow),
		),
		ixn("*",
			src("web", "a", deny),
			src("metrics", "a", allow),
			src("*", "c", allow),
		),
		ixn("inventory",
			src("api", "a", allow),
		),
		ixn("reports",
			&configentry.SourceIntention{Name: "*", Namespace: "*", Peer: "a", Action: allow},
			&configentry.SourceIntention{Name: "web", Namespace: "default", Action: deny},
			&configentry.SourceIntention{Name: "web", SamenessGroup: "sg", Action: allow},
			&configentry.SourceIntention{Name: "api", Partition: "p2", Action: allow},
		),
	)
	tests := []struct {
		name       string
		dst        string
		caller     Caller
		allow      bool
		precedence int
		reason     string
	}{
		{"exact source beats wildcard", "billing", Caller{Service: "web", Peer: "a"}, true, 9, `intention "web" from peer "a" -> "billing": allow`},
		{"wildcard source of the peer", "billing", Caller{Service: "api", Peer: "a"}, false, 8, `intention "*" from peer "a" -> "billing": deny`},
		{"local source matches local caller", "billing", Caller{Service: "web"}, true, 9, `intention "web" -> "billing": allow`},
		{"peer must match exactly", "billing", Caller{Service: "api", Peer: "a2"}, false, 0, `no intention allows "api" from peer "a2" -> "billing" (default deny across peers)`},
		{"peer source does not match local caller", "billing", Caller{Service: "api"}, false, 0, `no intention allows "api" -> "billing" (default deny, applied to local callers too)`},
		{"local source does not match peer caller", "inventory", Caller{Service: "api", Peer: "b"}, false, 0, ""},
		{"exact entry beats wildcard entry", "billing", Caller{Service: "api", Peer: "b"}, true, 9, ""},
		{"falls through to wildcard entry", "inventory", Caller{Service: "web", Peer: "a"}, false, 6, `intention "web" from peer "a" -> "*": deny`},
		{"wildcard entry for destination without entry", "search", Caller{Service: "metrics", Peer: "a"}, true, 6, `intention "metrics" from peer "a" -> "*": allow`},
		{"wildcard source in wildcard entry", "search", Caller{Service: "x", Peer: "c"}, true, 5, ""},
		{"nothing for destination", "search", Caller{Service: "x", Peer: "d"}, false, 0, ""},
		{"wildcard namespace matches any namespace", "reports", Caller{Service: "x", Namespace: "team", Peer: "a"}, true, 7, ""},
		{"default namespace matches empty", "reports", Caller{Service: "web"}, false, 9, `intention "web" -> "reports": deny`},
		{"other namespace does not match default", "reports", Caller{Service: "web", Namespace: "team"}, false, 0, ""},
		{"sameness group and partition sources never match", "reports", Caller{Service: "api"}, false, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []*http.Request{nil, req("GET", "/")} {
				d := in.Authorize(tt.dst, tt.caller, r)
				if d.Allow != tt.allow || d.Precedence != tt.precedence {
					t.Errorf("got allow=%v precedence=%d (%s), want allow=%v precedence=%d", d.Allow, d.Precedence, d.Reason, tt.allow, tt.precedence)
				}
				if tt.reason != "" && d.Reason != tt.reason {
					t.Errorf("got reason %q, want %q", d.Reason, tt.reason)
				}
				if d.Reason == "" {
					t.Error("empty reason")
				}
			}
			if in.NeedsL7(tt.dst, tt.caller) {
				t.Error("NeedsL7 = true for L4 intentions")
			}
		})
	}
}

func TestAuthorizeL7(t *testing.T) {
	in := mustCompile(t,
		ixn("billing",
			l7src("web", "a",
				perm(deny, configentry.IntentionHTTPPermission{PathPrefix: "/admin"}),
				perm(allow, configentry.IntentionHTTPPermission{PathExact: "/healthz"}),
				perm(allow, configentry.IntentionHTTPPermission{PathRegex: "/api/v[0-9]+", Methods: []string{"get", "HEAD"}}),
				perm(allow, configentry.IntentionHTTPPermission{PathPrefix: "/env", Header: []configentry.IntentionHTTPHeaderPermission{
					{Name: "X-Env", Exact: "PROD", IgnoreCase: true},
				}}),
				perm(allow, configentry.IntentionHTTPPermission{PathPrefix: "/nodebug", Header: []configentry.IntentionHTTPHeaderPermission{
					{Name: "X-Debug", Present: true, Invert: true},
				}}),
				perm(allow, configentry.IntentionHTTPPermission{PathPrefix: "/notbeta", Header: []configentry.IntentionHTTPHeaderPermission{
					{Name: "X-Track", Exact: "beta", Invert: true},
				}}),
				perm(allow, configentry.IntentionHTTPPermission{PathPrefix: "/hdr", Header: []configentry.IntentionHTTPHeaderPermission{
					{Name: "X-Pre", Prefix: "ab"},
					{Name: "X-Suf", Suffix: "YZ", IgnoreCase: true},
					{Name: "X-Con", Contains: "mid"},
					{Name: "X-Re", Regex: "[0-9]+"},
				}}),
				perm(allow, configentry.IntentionHTTPPermission{PathPrefix: "/host", Header: []configentry.IntentionHTTPHeaderPermission{
					{Name: ":authority", Suffix: ".example"},
				}}),
			),
		),
	)
	caller := Caller{Service: "web", Peer: "a"}
	all := func(kv ...string) []string { return kv }
	tests := []struct {
		name    string
		r       *http.Request
		allow   bool
		reason  string // substring
		headers []string
	}{
		{name: "first matching permission denies", r: req("GET", "/admin/users"), reason: `intention "web" from peer "a" -> "billing": Permissions[0] (PathPrefix "/admin") matches: deny`},
		{name: "exact path", r: req("POST", "/healthz"), allow: true, reason: "Permissions[1]"},
		{name: "exact path is exact", r: req("GET", "/healthz/x"), reason: "no permission matches the request: deny"},
		{name: "regex and method", r: req("GET", "/api/v2"), allow: true, reason: "Permissions[2]"},
		{name: "regex must match the whole path", r: req("GET", "/api/v2/x")},
		{name: "regex ignores query", r: req("HEAD", "/api/v10?x=1"), allow: true},
		{name: "method not listed", r: req("POST", "/api/v2")},
		{name: "method is case-sensitive", r: req("get", "/api/v2")},
		{name: "empty method is GET", r: req("", "/api/v2"), allow: true},
		{name: "header exact ignore case", r: req("GET", "/env", "X-Env", "prod"), allow: true},
		{name: "header exact ignore case mismatch", r: req("GET", "/env", "X-Env", "production")},
		{name: "header absent", r: req("GET", "/env")},
		{name: "inverted present: absent", r: req("GET", "/nodebug"), allow: true},
		{name: "inverted present: present", r: req("GET", "/nodebug", "x-debug", "")},
		{name: "inverted exact: other value", r: req("GET", "/notbeta", "X-Track", "stable"), allow: true},
		{name: "inverted exact: same value", r: req("GET", "/notbeta", "X-Track", "beta")},
		{name: "inverted exact: absent header never matches (Envoy)", r: req("GET", "/notbeta")},
		{name: "all header kinds", r: req("GET", "/hdr", "X-Pre", "abc", "X-Suf", "wxyz", "X-Con", "amidst", "X-Re", "123"), allow: true},
		{name: "suffix is case-sensitive without IgnoreCase on others", r: req("GET", "/hdr", "X-Pre", "ABc", "X-Suf", "wxyz", "X-Con", "amidst", "X-Re", "123")},
		{name: "regex header full match", r: req("GET", "/hdr", "X-Pre", "abc", "X-Suf", "wxyz", "X-Con", "amidst", "X-Re", "123a")},
		{name: "multiple values joined with comma", r: req("GET", "/hdr", all("X-Pre", "abc", "X-Suf", "wxyz", "X-Con", "a", "X-Con", "mid", "X-Re", "1")...), allow: true},
		{name: "host pseudo-header", r: req("GET", "/host"), allow: true},
		{name: "no permission matches", r: req("GET", "/other"), reason: `intention "web" from peer "a" -> "billing": no permission matches the request: deny`},
		{name: "L4 decision with permissions denies", r: nil, reason: "L7 permissions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := in.Authorize("billing", caller, tt.r)
			if d.Allow != tt.allow {
				t.Errorf("got allow=%v (%s), want %v", d.Allow, d.Reason, tt.allow)
			}
			if d.Precedence != 9 {
				t.Errorf("got precedence %d, want 9", d.Precedence)
			}
			if !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("got reason %q, want it to contain %q", d.Reason, tt.reason)
			}
		})
	}
	if !in.NeedsL7("billing", caller) {
		t.Error("NeedsL7 = false, want true")
	}
	if in.NeedsL7("billing", Caller{Service: "web"}) {
		t.Error("NeedsL7 = true for a caller no source matches")
	}
}

func TestAuthorizeNil(t *testing.T) {
	var in *Intentions
	d := in.Authorize("billing", Caller{Service: "web", Peer: "a"}, nil)
	if d.Allow || !strings.Contains(d.Reason, "default deny across peers") {
		t.Errorf("got %+v, want default deny", d)
	}
	if in.NeedsL7("billing", Caller{}) {
		t.Error("NeedsL7 on nil = true")
	}
	empty := mustCompile(t)
	if d := empty.Authorize("billing", Caller{Service: "web"}, req("GET", "/")); d.Allow {
		t.Errorf("got %+v, want deny", d)
	}
}

func TestCompileIntentionsErrors(t *testing.T) {
	tests := []struct {
		name    string
		entries []*configentry.ServiceIntentionsConfigEntry
		want    string
	}{
		{
			"bad path regex",
			[]*configentry.ServiceIntentionsConfigEntry{ixn("billing", src("x", "", allow), l7src("web", "a",
				perm(allow, configentry.IntentionHTTPPermission{PathPrefix: "/"}),
				perm(allow, configentry.IntentionHTTPPermission{PathRegex: "(["}),
			))},
			`service-intentions "billing" Sources[1].Permissions[1].HTTP.PathRegex: invalid regular expression "(["`,
		},
		{
			"bad header regex",
			[]*configentry.ServiceIntentionsConfigEntry{ixn("billing", l7src("web", "a",
				perm(allow, configentry.IntentionHTTPPermission{Header: []configentry.IntentionHTTPHeaderPermission{{Name: "a", Exact: "b"}, {Name: "x", Regex: "a{2,1}"}}}),
			))},
			`service-intentions "billing" Sources[0].Permissions[0].HTTP.Header[1].Regex: invalid regular expression "a{2,1}"`,
		},
		{
			"missing HTTP",
			[]*configentry.ServiceIntentionsConfigEntry{ixn("billing", l7src("web", "a", &configentry.IntentionPermission{Action: allow}))},
			`service-intentions "billing" Sources[0].Permissions[0].HTTP: missing`,
		},
		{
			"duplicate destination",
			[]*configentry.ServiceIntentionsConfigEntry{ixn("billing", src("a", "", allow)), ixn("billing", src("b", "", allow))},
			`service-intentions "billing": more than one entry`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CompileIntentions(tt.entries)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestCompileIntentionsSkipsNilsAndOtherNamespaces(t *testing.T) {
	in := mustCompile(t, nil,
		&configentry.ServiceIntentionsConfigEntry{Name: "billing", Namespace: "team", Sources: []*configentry.SourceIntention{src("web", "", allow)}},
		&configentry.ServiceIntentionsConfigEntry{Name: "billing", Sources: []*configentry.SourceIntention{nil, src("api", "", allow)}},
	)
	if d := in.Authorize("billing", Caller{Service: "web"}, nil); d.Allow {
		t.Errorf("entry in another namespace applied: %+v", d)
	}
	if d := in.Authorize("billing", Caller{Service: "api"}, nil); !d.Allow || d.Precedence != 9 {
		t.Errorf("got %+v, want allow at precedence 9 (computed without Normalize)", d)
	}
}

func TestIntentionsConcurrent(t *testing.T) {
	in := mustCompile(t, ixn("billing", l7src("web", "a",
		perm(allow, configentry.IntentionHTTPPermission{PathRegex: "/v[0-9]+/.*", Header: []configentry.IntentionHTTPHeaderPermission{{Name: "X", Regex: "y+"}}}),
	)))
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				d := in.Authorize("billing", Caller{Service: "web", Peer: "a"}, req("GET", "/v1/x", "X", "yy"))
				if !d.Allow {
					t.Errorf("got %+v", d)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// JWTs are not verified by peerd: an allow that requires one never
// allows.
func TestAuthorizeJWTFailsClosed(t *testing.T) {
	jwt := &configentry.IntentionJWTRequirement{Providers: []*configentry.IntentionJWTProvider{{Name: "okta"}}}
	in, err := CompileIntentions([]*configentry.ServiceIntentionsConfigEntry{
		{Name: "api", Sources: []*configentry.SourceIntention{{Name: "web", Peer: "a", Permissions: []*configentry.IntentionPermission{
			{Action: configentry.IntentionActionAllow, HTTP: &configentry.IntentionHTTPPermission{PathPrefix: "/"}, JWT: jwt},
		}}}},
		{Name: "db", JWT: jwt, Sources: []*configentry.SourceIntention{{Name: "web", Peer: "a", Action: configentry.IntentionActionAllow}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := http.NewRequest("GET", "http://api/x", nil)
	if d := in.Authorize("api", Caller{Service: "web", Namespace: "default", Peer: "a"}, r); d.Allow {
		t.Fatalf("permission requiring a JWT allowed: %+v", d)
	}
	if d := in.Authorize("db", Caller{Service: "web", Namespace: "default", Peer: "a"}, nil); d.Allow || !strings.Contains(d.Reason, "JWT") {
		t.Fatalf("entry requiring a JWT: %+v", d)
	}
}
