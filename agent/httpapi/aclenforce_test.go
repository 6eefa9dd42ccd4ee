package httpapi

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/peerd/peerd/agent/httpapi/pbrelay"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/acl"
	"github.com/peerd/peerd/internal/decode"
	"github.com/peerd/peerd/internal/testutil"
	"github.com/peerd/peerd/l7proxy"
)

// testResolver resolves secrets to real policies of internal/acl under a
// deny default: what aclresolve does against the ACL tables, without them.
// "root" is a management token; "" is the anonymous token, with no rules.
type testResolver struct{ rules map[string]string }

func (tr testResolver) Enabled() bool { return true }

func (tr testResolver) Enforcer(secret string) (acl.Enforcer, error) {
	if secret == "root" {
		return acl.Enforcer{Authorizer: acl.Management(), AccessorID: "acc-root"}, nil
	}
	rules, ok := tr.rules[secret]
	if secret == "" {
		rules, ok = tr.rules["anonymous"], true
	}
	if !ok {
		return acl.Enforcer{}, ErrACLNotFound
	}
	p, err := acl.ParseRules(rules)
	if err != nil {
		return acl.Enforcer{}, err
	}
	accessor := "acc-" + secret
	if secret == "" {
		accessor = "00000000-0000-0000-0000-000000000002"
	}
	return acl.Enforcer{Authorizer: acl.Chain(acl.NewPolicyAuthorizer(p), acl.DenyAll()), AccessorID: accessor}, nil
}

// aclNode is a dev server whose HTTP API enforces ACLs with rules, with
// the service web (check web-ttl) and the node check ttl1 registered from
// "config" on it, and the logs in a buffer.
func aclNode(t *testing.T, rules map[string]string, tokens *Tokens) (*peeringNode, *testutil.SyncBuffer) {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	n := startPeeringNodeWith(t, "n", "dc1", true, func(c *Config) {
		c.ACL = testResolver{rules: rules}
		c.Tokens = tokens
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	ctx := context.Background()
	if err := n.local.AddService(ctx, &state.ServiceDefinition{Name: "web", Port: 80,
		Checks: []*state.CheckType{{CheckID: "web-ttl", TTL: decode.Duration(time.Minute)}}}, true); err != nil {
		t.Fatal(err)
	}
	if err := n.local.AddCheck(ctx, &state.CheckType{CheckID: "ttl1", Name: "ttl1", TTL: decode.Duration(time.Minute)}, true); err != nil {
		t.Fatal(err)
	}
	return n, logs
}

type answer struct {
	code   int
	header http.Header
	body   string
}

func doToken(t *testing.T, method, url, token, body string) answer {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Consul-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// TestEveryRouteIsEnforced walks every route of the API with the
// anonymous token under default deny: each is refused (403 naming the
// permission), filtered (answers, with what the token may not see
// dropped), or open as in Consul. A route added without a line here fails
// the test, so none is forgotten.
func TestEveryRouteIsEnforced(t *testing.T) {
	n, _ := aclNode(t, nil, nil)
	const (
		deny   = "deny"
		filter = "filter"
		open   = "open"
		// system: the ACL system's own routes, which authorize
		// themselves (acl:read/write, any token for token/self,
		// bootstrap once); agent/TestACLConsulAPI drives them with the
		// official client against the real resolver.
		system = "system"
	)
	key := `{"Key": "dGVzdC1nb3NzaXAta2V5LWZvci1wZWVyZC10ZXN0cyE="}`
	routes := map[string]struct {
		want, path, body string
	}{
		"GET /v1/agent/self":                    {deny, "", ""},
		"GET /v1/agent/members":                 {filter, "", ""},
		"PUT /v1/agent/join/{address}":          {deny, "/v1/agent/join/127.0.0.1:1", ""},
		"PUT /v1/agent/leave":                   {deny, "", ""},
		"GET /v1/agent/services":                {filter, "", ""},
		"GET /v1/agent/service/{id}":            {deny, "/v1/agent/service/web", ""},
		"PUT /v1/agent/service/register":        {deny, "", `{"Name": "web", "Port": 80}`},
		"PUT /v1/agent/service/deregister/{id}": {deny, "/v1/agent/service/deregister/web", ""},
		"GET /v1/agent/checks":                  {filter, "", ""},
		"PUT /v1/agent/check/register":          {deny, "", `{"Name": "c", "TTL": "10s"}`},
		"PUT /v1/agent/check/deregister/{id}":   {deny, "/v1/agent/check/deregister/ttl1", ""},
		"PUT /v1/agent/check/pass/{id}":         {deny, "/v1/agent/check/pass/ttl1", ""},
		"PUT /v1/agent/check/warn/{id}":         {deny, "/v1/agent/check/warn/web-ttl", ""},
		"PUT /v1/agent/check/fail/{id}":         {deny, "/v1/agent/check/fail/ttl1", ""},
		"PUT /v1/agent/check/update/{id}":       {deny, "/v1/agent/check/update/ttl1", `{"Status": "passing"}`},
		"PUT /v1/agent/token/{kind}":            {deny, "/v1/agent/token/default", `{"Token": "x"}`},
		"GET /v1/agent/dataplane":               {deny, "", ""},
		// peerd's own probe endpoint: the kubelet sends no token, and the
		// answer (ok or a reason, the node's name and role) tells no more
		// than the open /v1/status/leader does.
		"GET /v1/agent/health":                   {open, "", ""},
		"PUT /v1/agent/service/maintenance/{id}": {deny, "/v1/agent/service/maintenance/web?enable=true", ""},
		"PUT /v1/agent/maintenance":              {deny, "/v1/agent/maintenance?enable=true", ""},
		"GET /v1/connect/intentions":             {filter, "", ""},
		"POST /v1/connect/intentions":            {deny, "", `{"SourceName": "a", "DestinationName": "web", "Action": "allow"}`},
		"GET /v1/connect/intentions/exact":       {deny, "/v1/connect/intentions/exact?source=a&destination=web", ""},
		"PUT /v1/connect/intentions/exact":       {deny, "/v1/connect/intentions/exact?source=a&destination=web", `{"Action": "allow"}`},
		"DELETE /v1/connect/intentions/exact":    {deny, "/v1/connect/intentions/exact?source=a&destination=web", ""},
		"GET /v1/connect/intentions/check":       {deny, "/v1/connect/intentions/check?source=a&destination=web", ""},
		"GET /v1/connect/intentions/match":       {deny, "/v1/connect/intentions/match?by=destination&name=web", ""},
		// The legacy ID-based routes: no intention has an ID, so they
		// answer 404 to any known token (TestIntentionsACL).
		"GET /v1/connect/intentions/{id}":          {open, "/v1/connect/intentions/x", ""},
		"PUT /v1/connect/intentions/{id}":          {open, "/v1/connect/intentions/x", `{}`},
		"DELETE /v1/connect/intentions/{id}":       {open, "/v1/connect/intentions/x", ""},
		"PUT /v1/connect/intentions/{$}":           {open, "/v1/connect/intentions/", `{}`},
		"GET /v1/catalog/datacenters":              {open, "", ""},
		"GET /v1/catalog/nodes":                    {filter, "", ""},
		"GET /v1/catalog/node/{node}":              {filter, "/v1/catalog/node/n", ""},
		"GET /v1/catalog/services":                 {filter, "", ""},
		"GET /v1/catalog/service/{service}":        {filter, "/v1/catalog/service/web", ""},
		"PUT /v1/catalog/register":                 {deny, "", `{"Node": "n2", "Address": "10.0.0.2"}`},
		"PUT /v1/catalog/deregister":               {deny, "", `{"Node": "n2"}`},
		"GET /v1/health/service/{service}":         {filter, "/v1/health/service/web", ""},
		"GET /v1/health/checks/{service}":          {filter, "/v1/health/checks/web", ""},
		"GET /v1/health/node/{node}":               {filter, "/v1/health/node/n", ""},
		"GET /v1/health/state/{state}":             {filter, "/v1/health/state/any", ""},
		"PUT /v1/config":                           {deny, "", `{"Kind": "service-defaults", "Name": "web", "Protocol": "http"}`},
		"GET /v1/config/{kind}":                    {filter, "/v1/config/service-defaults", ""},
		"GET /v1/config/{kind}/{name}":             {deny, "/v1/config/service-defaults/web", ""},
		"DELETE /v1/config/{kind}/{name}":          {deny, "/v1/config/service-defaults/web", ""},
		"POST /v1/peering/token":                   {deny, "", `{"PeerName": "p"}`},
		"POST /v1/peering/establish":               {deny, "", `{"PeerName": "p", "PeeringToken": "x"}`},
		"GET /v1/peering/{name}":                   {deny, "/v1/peering/p", ""},
		"DELETE /v1/peering/{name}":                {deny, "/v1/peering/p", ""},
		"POST /v1/peering/{name}/rotate-secret":    {deny, "/v1/peering/p/rotate-secret", ""},
		"GET /v1/peerings":                         {deny, "", ""},
		"GET /v1/exported-services":                {deny, "", ""},
		"GET /v1/imported-services":                {deny, "", ""},
		"GET /v1/virtual-ips":                      {filter, "", ""},
		"GET /v1/connect/ca/roots":                 {open, "", ""},
		"POST /v1/connect/ca/rotate":               {deny, "", ""},
		"GET /v1/operator/keyring":                 {deny, "", ""},
		"POST /v1/operator/keyring":                {deny, "", key},
		"PUT /v1/operator/keyring":                 {deny, "", key},
		"DELETE /v1/operator/keyring":              {deny, "", key},
		"GET /v1/status/leader":                    {open, "", ""},
		"GET /v1/status/peers":                     {open, "", ""},
		"GET /v1/operator/raft/configuration":      {deny, "", ""},
		"DELETE /v1/operator/raft/peer":            {deny, "/v1/operator/raft/peer?id=x", ""},
		"GET /v1/operator/autopilot/state":         {deny, "", ""},
		"GET /v1/operator/autopilot/health":        {deny, "", ""},
		"GET /v1/operator/autopilot/configuration": {deny, "", ""},
		"GET /v1/snapshot":                         {deny, "", ""},
		"PUT /v1/snapshot":                         {deny, "", "not a snapshot"},
		"POST /v1/operator/join-token":             {deny, "", `{"Role": "client"}`},
		"GET /v1/operator/join-tokens":             {deny, "", ""},
		"DELETE /v1/operator/join-token/{id}":      {deny, "/v1/operator/join-token/x", ""},
		"POST /v1/operator/revoke-node/{node}":     {deny, "/v1/operator/revoke-node/x", ""},
		"GET /metrics":                             {deny, "", ""},
		"GET /v1/agent/metrics":                    {deny, "", ""},
		"PUT /v1/acl/bootstrap":                    {system, "", ""},
		"PUT /v1/acl/token":                        {system, "", ""},
		"GET /v1/acl/token/self":                   {system, "", ""},
		"GET /v1/acl/token/{id}":                   {system, "", ""},
		"PUT /v1/acl/token/{id}":                   {system, "", ""},
		"DELETE /v1/acl/token/{id}":                {system, "", ""},
		"PUT /v1/acl/token/{id}/clone":             {system, "", ""},
		"GET /v1/acl/tokens":                       {system, "", ""},
		"PUT /v1/acl/policy":                       {system, "", ""},
		"GET /v1/acl/policy/{id}":                  {system, "", ""},
		"GET /v1/acl/policy/name/{name}":           {system, "", ""},
		"PUT /v1/acl/policy/{id}":                  {system, "", ""},
		"DELETE /v1/acl/policy/{id}":               {system, "", ""},
		"GET /v1/acl/policies":                     {system, "", ""},
		"PUT /v1/acl/role":                         {system, "", ""},
		"GET /v1/acl/role/{id}":                    {system, "", ""},
		"GET /v1/acl/role/name/{name}":             {system, "", ""},
		"PUT /v1/acl/role/{id}":                    {system, "", ""},
		"DELETE /v1/acl/role/{id}":                 {system, "", ""},
		"GET /v1/acl/roles":                        {system, "", ""},
		// Not implemented (501), so nothing to enforce.
		"/v1/kv/": {open, "/v1/kv/x", ""},
	}
	seen := map[string]bool{}
	for _, pattern := range n.srv.patterns {
		seen[pattern] = true
		rt, ok := routes[pattern]
		if !ok {
			t.Errorf("route %s has no line in this test: say what it needs (deny, filter or open) and add it to the README's table", pattern)
			continue
		}
		if rt.want == system {
			continue
		}
		t.Run(pattern, func(t *testing.T) {
			method, path, found := strings.Cut(pattern, " ")
			if !found {
				method, path = http.MethodGet, pattern
			}
			if rt.path != "" {
				path = rt.path
			}
			got := doToken(t, method, n.url+path, "", rt.body)
			switch rt.want {
			case deny:
				if got.code != http.StatusForbidden || !strings.HasPrefix(got.body, "Permission denied: token with AccessorID '00000000-0000-0000-0000-000000000002' lacks permission") {
					t.Errorf("anonymous: got %d %q, want 403 Permission denied", got.code, got.body)
				}
			case filter:
				if got.code != http.StatusOK {
					t.Errorf("anonymous: got %d %q, want 200 with what it may not see dropped", got.code, got.body)
				}
				if got.header.Get(filteredHeader) != "" {
					t.Errorf("anonymous: got %s set: Consul withholds it from requests without a token", filteredHeader)
				}
			case open:
				if got.code == http.StatusForbidden {
					t.Errorf("anonymous: got 403 %q on a route Consul leaves open", got.body)
				}
			}
			// An unknown token is refused everywhere but the open routes.
			if rt.want != open {
				if got := doToken(t, method, n.url+path, "no-such-token", rt.body); got.code != http.StatusForbidden || got.body != "ACL not found\n" {
					t.Errorf("unknown token: got %d %q, want 403 ACL not found", got.code, got.body)
				}
			}
		})
	}
	for pattern := range routes {
		if !seen[pattern] {
			t.Errorf("the test lists %s, which the API no longer has", pattern)
		}
	}
	// The filtered lists dropped what the anonymous token may not see.
	if got := doToken(t, "GET", n.url+"/v1/agent/services", "", ""); got.body != "{}\n" {
		t.Errorf("anonymous agent services: got %q, want {}", got.body)
	}
}

// A token with service:write on web cannot register billing, through the
// agent or the catalog, nor a proxy fronting billing, nor a service
// replacing billing's ID.
func TestServiceWriteOnWebCannotRegisterBilling(t *testing.T) {
	n, logs := aclNode(t, map[string]string{"webw": `service "web" { policy = "write" }`}, nil)
	tests := []struct {
		name, path, body string
		code             int
		want             string
	}{
		{"agent web", "/v1/agent/service/register", `{"Name": "web", "ID": "web2", "Port": 81}`, 200, ""},
		{"agent billing", "/v1/agent/service/register", `{"Name": "billing", "Port": 82}`, 403,
			`Permission denied: token with AccessorID 'acc-webw' lacks permission 'service:write' on "billing"`},
		{"agent proxy for billing", "/v1/agent/service/register",
			`{"Name": "web", "ID": "px", "Kind": "connect-proxy", "Port": 21000, "Proxy": {"DestinationServiceName": "billing"}}`, 403,
			`lacks permission 'service:write' on "billing"`},
		{"agent sidecar named billing", "/v1/agent/service/register",
			`{"Name": "web", "ID": "web3", "Port": 83, "Connect": {"SidecarService": {"Name": "billing"}}}`, 403,
			`lacks permission 'service:write' on "billing"`},
		{"catalog billing", "/v1/catalog/register",
			`{"Node": "n", "Address": "127.0.0.1", "SkipNodeUpdate": true, "Service": {"Service": "billing", "Port": 84}}`, 403,
			`lacks permission 'service:write' on "billing"`},
		{"catalog web on a new node", "/v1/catalog/register",
			`{"Node": "ext", "Address": "10.0.0.9", "Service": {"Service": "web", "Port": 85}}`, 403,
			`lacks permission 'node:write' on "ext"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := doToken(t, "PUT", n.url+tt.path, "webw", tt.body)
			if got.code != tt.code || !strings.Contains(got.body, tt.want) {
				t.Errorf("got %d %q, want %d containing %q", got.code, got.body, tt.code, tt.want)
			}
		})
	}
	if _, _, ok := n.local.Service("billing"); ok {
		t.Error("billing was registered")
	}
	if strings.Contains(logs.String(), "webw") && !strings.Contains(logs.String(), "acc-webw") {
		t.Errorf("the log names the secret: %s", logs.String())
	}
	if !strings.Contains(logs.String(), "ACL refused a request") {
		t.Errorf("refusals not logged: %s", logs.String())
	}
	// Deregistering another's service needs its write too.
	if got := doToken(t, "PUT", n.url+"/v1/agent/service/deregister/web", "", ""); got.code != 403 {
		t.Errorf("anonymous deregister of web: got %d %q", got.code, got.body)
	}
}

// The anonymous token cannot read the snapshot (it holds the CA's private
// key and the peering secrets) nor make a peering token (it holds an
// establishment secret); operator:write is not management either.
func TestSnapshotAndPeeringSecretsNeedManagement(t *testing.T) {
	n, _ := aclNode(t, map[string]string{"op": `operator = "write"`, "peer": `peering = "write"`}, nil)
	for _, tok := range []string{"", "op", "peer"} {
		if got := doToken(t, "GET", n.url+"/v1/snapshot", tok, ""); got.code != 403 || !strings.Contains(got.body, "lacks permission 'acl:write'") {
			t.Errorf("token %q GET /v1/snapshot: got %d %.80q, want 403 naming acl:write", tok, got.code, got.body)
		}
		if got := doToken(t, "PUT", n.url+"/v1/snapshot", tok, "junk"); got.code != 403 {
			t.Errorf("token %q PUT /v1/snapshot: got %d %.80q, want 403", tok, got.code, got.body)
		}
	}
	if got := doToken(t, "POST", n.url+"/v1/peering/token", "", `{"PeerName": "p"}`); got.code != 403 || strings.Contains(got.body, "PeeringToken") {
		t.Errorf("anonymous peering token: got %d %q", got.code, got.body)
	}
	if got := doToken(t, "POST", n.url+"/v1/peering/token", "peer", `{"PeerName": "p"}`); got.code != 200 || !strings.Contains(got.body, "PeeringToken") {
		t.Errorf("peering:write token: got %d %q, want a token", got.code, got.body)
	}
	if got := doToken(t, "GET", n.url+"/v1/peering/p", "", ""); got.code != 403 {
		t.Errorf("anonymous peering read: got %d %q", got.code, got.body)
	}
	if got := doToken(t, "GET", n.url+"/v1/snapshot", "root", ""); got.code != 200 || len(got.body) == 0 {
		t.Errorf("management snapshot: got %d (%d bytes)", got.code, len(got.body))
	}
}

// A read-only token (operator:read) cannot rotate the CA; operator:write
// can.
func TestReadOnlyTokenCannotRotateCA(t *testing.T) {
	n, _ := aclNode(t, map[string]string{"ro": `operator = "read"`, "rw": `operator = "write"`}, nil)
	_, before, _ := n.cluster.Store().CARoots(nil)
	got := doToken(t, "POST", n.url+"/v1/connect/ca/rotate", "ro", "")
	if got.code != 403 || !strings.Contains(got.body, "lacks permission 'operator:write'") {
		t.Fatalf("operator:read rotate: got %d %q, want 403 naming operator:write", got.code, got.body)
	}
	if _, after, _ := n.cluster.Store().CARoots(nil); len(after) != len(before) {
		t.Fatalf("the refused rotation changed the roots: %d -> %d", len(before), len(after))
	}
	if got := doToken(t, "GET", n.url+"/v1/operator/raft/configuration", "ro", ""); got.code != 200 {
		t.Errorf("operator:read raft configuration: got %d %q", got.code, got.body)
	}
	if got := doToken(t, "POST", n.url+"/v1/connect/ca/rotate", "rw", ""); got.code != 200 {
		t.Errorf("operator:write rotate: got %d %q", got.code, got.body)
	}
}

// Filtering drops what the token may not read and says so in
// X-Consul-Results-Filtered-By-ACLs; nothing dropped, no header.
func TestFilteringSetsHeader(t *testing.T) {
	n, _ := aclNode(t, map[string]string{
		"webr": `service "web" { policy = "read" }` + "\n" + `node_prefix "" { policy = "read" }`,
		"all":  `service_prefix "" { policy = "read" }` + "\n" + `node_prefix "" { policy = "read" }`,
		"svc":  `service_prefix "" { policy = "read" }`,
	}, nil)
	if got := doToken(t, "PUT", n.url+"/v1/catalog/register", "root",
		`{"Node": "ext", "Address": "10.0.0.9", "Service": {"Service": "billing", "Port": 84}}`); got.code != 200 {
		t.Fatalf("register billing: %d %q", got.code, got.body)
	}
	testutil.Eventually(t, 10*time.Second, "web in the catalog", func() error {
		if got := doToken(t, "GET", n.url+"/v1/catalog/service/web", "root", ""); !strings.Contains(got.body, `"ServiceName":"web"`) {
			return io.ErrUnexpectedEOF
		}
		return nil
	})
	tests := []struct {
		path, token  string
		has, hasNot  string
		filteredHead string
	}{
		{"/v1/catalog/services", "webr", `"web"`, `"billing"`, "true"},
		{"/v1/catalog/services", "all", `"billing"`, "nothing", ""},
		{"/v1/catalog/services", "root", `"billing"`, "nothing", ""},
		{"/v1/catalog/service/billing", "webr", "[]", "billing", "true"},
		{"/v1/health/service/billing", "webr", "[]", "billing", "true"},
		{"/v1/health/state/any", "webr", "web-ttl", "billing", ""},
		{"/v1/catalog/node/ext", "webr", `"Services":{}`, "billing", "true"},
		{"/v1/agent/services", "webr", `"web"`, "nothing", ""},
		{"/v1/agent/members", "webr", `"Name":"n"`, "nothing", ""},
		{"/v1/agent/members", "all", `"Name":"n"`, "nothing", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path+" "+tt.token, func(t *testing.T) {
			got := doToken(t, "GET", n.url+tt.path, tt.token, "")
			if got.code != 200 || !strings.Contains(got.body, tt.has) || strings.Contains(got.body, tt.hasNot) {
				t.Errorf("got %d %q, want it to hold %q and not %q", got.code, got.body, tt.has, tt.hasNot)
			}
			if h := got.header.Get(filteredHeader); h != tt.filteredHead {
				t.Errorf("got %s %q, want %q", filteredHeader, h, tt.filteredHead)
			}
		})
	}
	// A token without node:read sees no members, and is told.
	noNodes := doToken(t, "GET", n.url+"/v1/agent/members", "svc", "")
	if noNodes.code != 200 || noNodes.body != "[]\n" || noNodes.header.Get(filteredHeader) != "true" {
		t.Errorf("members without node:read: got %d %q %s=%q, want [] and the header", noNodes.code, noNodes.body, filteredHeader, noNodes.header.Get(filteredHeader))
	}
}

// /metrics and /v1/agent/metrics need agent:read on this node; refusals
// are counted by route in peerd_acl_denials_total.
func TestMetricsNeedAgentRead(t *testing.T) {
	n, _ := aclNode(t, map[string]string{
		"agent":      `agent "n" { policy = "read" }`,
		"otheragent": `agent "m" { policy = "read" }`,
	}, nil)
	for _, path := range []string{"/metrics", "/v1/agent/metrics"} {
		for _, tok := range []string{"", "otheragent"} {
			if got := doToken(t, "GET", n.url+path, tok, ""); got.code != 403 || !strings.Contains(got.body, `lacks permission 'agent:read' on "n"`) {
				t.Errorf("%s with %q: got %d %.100q, want 403 naming agent:read", path, tok, got.code, got.body)
			}
		}
	}
	got := doToken(t, "GET", n.url+"/metrics", "agent", "")
	if got.code != 200 {
		t.Fatalf("agent:read /metrics: got %d %q", got.code, got.body)
	}
	for _, want := range []string{`peerd_acl_denials_total{route="GET /metrics"} 2`, `peerd_acl_denials_total{route="GET /v1/agent/metrics"} 2`} {
		if !strings.Contains(got.body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// The handler for a metrics listener of its own asks for nothing.
	rec := &bytes.Buffer{}
	w := &recorder{header: http.Header{}, body: rec}
	n.srv.MetricsHandler().ServeHTTP(w, httptestRequest(t, "/metrics"))
	if w.code != 0 && w.code != 200 || !strings.Contains(rec.String(), "peerd_acl_denials_total") {
		t.Errorf("MetricsHandler: got %d %.100q", w.code, rec.String())
	}
}

type recorder struct {
	header http.Header
	body   *bytes.Buffer
	code   int
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.code = code }

func httptestRequest(t *testing.T, path string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", "http://x"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// The relay serves what a client node sends on the server's own handler,
// so the server checks the token the relay carries: a client node (or
// anything holding the internal port) cannot restore or read a snapshot on
// its own say-so.
func TestRelayIsCheckedAgainOnTheServer(t *testing.T) {
	n, _ := aclNode(t, map[string]string{"op": `operator = "write"`}, nil)
	conn, err := grpc.NewClient(n.internalAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	relay := func(method, path, token string, body []byte) (int32, string) {
		path, query, _ := strings.Cut(path, "?")
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stream, err := pbrelay.NewHTTPRelayClient(conn).Do(ctx)
		if err != nil {
			t.Fatal(err)
		}
		req := &pbrelay.ReadRequest{Path: path, RawQuery: query, Method: method, FromServer: true}
		if token != "" {
			req.Headers = []*pbrelay.Header{{Name: "X-Consul-Token", Values: []string{token}}}
		}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		if body != nil {
			if err := stream.Send(&pbrelay.ReadRequest{Body: body}); err != nil {
				t.Fatal(err)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		first, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return first.GetStatus(), string(first.GetBody())
	}
	for _, tok := range []string{"", "op", "forged"} {
		if code, body := relay("PUT", "/v1/snapshot", tok, []byte("junk")); code != 403 {
			t.Errorf("relayed restore with %q: got %d %q, want 403", tok, code, body)
		}
		if code, body := relay("GET", "/v1/snapshot", tok, nil); code != 403 {
			t.Errorf("relayed save with %q: got %d %.80q, want 403", tok, code, body)
		}
	}
	if code, _ := relay("GET", "/v1/snapshot", "root", nil); code != 200 {
		t.Errorf("relayed save with a management token: got %d, want 200", code)
	}
	if code, body := relay("GET", "/v1/snapshot?token=root", "", nil); code != 200 {
		t.Errorf("relayed save with ?token=: got %d %.80q, want 200", code, body)
	}
}

// A cgroup is one service's: a second service claiming it is refused with
// the owner's name; another instance of the same service may share it,
// and claiming one takes service:write on the service.
func TestCgroupClaim(t *testing.T) {
	n, _ := aclNode(t, map[string]string{"webw": `service "web" { policy = "write" }`}, nil)
	reg := func(token, name, id, cgroup string) answer {
		return doToken(t, "PUT", n.url+"/v1/agent/service/register", token,
			`{"Name": "`+name+`", "ID": "`+id+`", "Port": 80, "Meta": {"`+l7proxy.CgroupMeta+`": "`+cgroup+`"}}`)
	}
	if got := reg("webw", "web", "web-a", "/sys/fs/cgroup/web.slice"); got.code != 200 {
		t.Fatalf("web claims its cgroup: %d %q", got.code, got.body)
	}
	if got := reg("webw", "web", "web-b", "/sys/fs/cgroup/web.slice/"); got.code != 200 {
		t.Errorf("a second web instance in the same cgroup: %d %q", got.code, got.body)
	}
	got := reg("root", "billing", "billing-1", "/sys/fs/cgroup/web.slice")
	if got.code != http.StatusConflict || !strings.Contains(got.body, `which service "web" (ID "web-a") on this node already claims`) {
		t.Errorf("billing claiming web's cgroup: got %d %q, want 409 naming web", got.code, got.body)
	}
	if got := reg("", "web", "web-c", "/sys/fs/cgroup/other.slice"); got.code != 403 {
		t.Errorf("anonymous claim: got %d %q, want 403", got.code, got.body)
	}
	testutil.Eventually(t, 10*time.Second, "web-a in the catalog", func() error {
		_, svcs, _ := n.cluster.Store().NodeServices(nil, "", "n")
		for _, s := range svcs {
			if s.ID == "web-a" {
				return nil
			}
		}
		return io.ErrUnexpectedEOF
	})
	got = doToken(t, "PUT", n.url+"/v1/catalog/register", "root",
		`{"Node": "n", "Address": "127.0.0.1", "SkipNodeUpdate": true, "Service": {"ID": "b2", "Service": "billing", "Port": 84, "Meta": {"`+l7proxy.CgroupMeta+`": "/sys/fs/cgroup/web.slice"}}}`)
	if got.code != http.StatusConflict || !strings.Contains(got.body, `service "web"`) {
		t.Errorf("catalog billing claiming web's cgroup: got %d %q, want 409", got.code, got.body)
	}
}
