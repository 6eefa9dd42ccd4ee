package httpapi

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// fuzzSkipped are the routes the HTTP fuzz target does not call with their
// own method: they change the fixture itself (its membership, raft
// configuration or CA) or dial the address in the path, so every later
// input would meet another node, or wait on the network.
var fuzzSkipped = map[string]bool{
	"PUT /v1/agent/join/{address}":         true,
	"PUT /v1/agent/leave":                  true,
	"DELETE /v1/operator/raft/peer":        true,
	"POST /v1/operator/revoke-node/{node}": true,
	"POST /v1/connect/ca/rotate":           true,
}

// fuzzRequestTimeout bounds one fuzzed request: a blocking query
// (?index=N&wait=...) would otherwise hold it for up to ten minutes.
const fuzzRequestTimeout = 50 * time.Millisecond

// FuzzHTTPQuery sends the HTTP API requests with any method, path and
// query string (index, wait, stale, consistent, filter, peer, tag, passing,
// node-meta, cas, pretty, ...) on a running dev server with a service and
// a peering. The handler must never panic, and must answer every request
// with a status below 500, except these server-side conditions:
//
//   - 501: what peerd does not implement (KV, join tokens without cluster
//     trust), which is not about the input;
//   - 503 once the request's context ended: a blocking query cut off by
//     this test's timeout, as a client that hangs up.
//
// A 500 (or any other 5xx) for bad input is a bug: it must be a 4xx that
// says what was wrong.
func FuzzHTTPQuery(f *testing.F) {
	for _, s := range []struct{ method, path, query string }{
		{"GET", "/v1/catalog/services", ""},
		{"GET", "/v1/catalog/service/web", "index=1&wait=1ms"},
		{"GET", "/v1/catalog/service/web", "index=18446744073709551615&wait=-5s"},
		{"GET", "/v1/catalog/service/web", "index=abc"},
		{"GET", "/v1/catalog/service/web", "tag=v1&tag=&node-meta=a:b&node-meta=bad&passing"},
		{"GET", "/v1/catalog/nodes", "dc=dc1&near=_agent&filter=Node+%3D%3D+x&stale"},
		{"GET", "/v1/catalog/node/n", "peer=p1&ns=default&partition=default"},
		{"GET", "/v1/health/service/web", "passing=false&peer=p1&index=3&wait=2562047h"},
		{"GET", "/v1/health/checks/web", "stale&consistent"},
		{"GET", "/v1/health/node/n", "pretty"},
		{"GET", "/v1/health/state/any", ""},
		{"GET", "/v1/health/state/nope", ""},
		{"GET", "/v1/config/service-defaults", "index=1&wait=1ns"},
		{"GET", "/v1/config/service-defaults/web", ""},
		{"GET", "/v1/config/nope/web", ""},
		{"DELETE", "/v1/config/service-defaults/web", "cas=abc"},
		{"GET", "/v1/peering/p1", "peer=x"},
		{"DELETE", "/v1/peering/nope", ""},
		{"GET", "/v1/peerings", "index=1&wait=10ms"},
		{"GET", "/v1/exported-services", ""},
		{"GET", "/v1/imported-services", "peer=p1"},
		{"GET", "/v1/virtual-ips", ""},
		{"GET", "/v1/agent/self", ""},
		{"GET", "/v1/agent/members", "wan=1&segment=x"},
		{"GET", "/v1/agent/services", "filter=x"},
		{"GET", "/v1/agent/service/web", ""},
		{"PUT", "/v1/agent/check/pass/nope", "note=%ff"},
		{"PUT", "/v1/agent/check/update/nope", ""},
		{"PUT", "/v1/agent/service/deregister/nope", ""},
		{"GET", "/v1/status/leader", ""},
		{"GET", "/v1/status/peers", ""},
		{"GET", "/v1/operator/raft/configuration", "stale"},
		{"GET", "/v1/operator/autopilot/state", ""},
		{"GET", "/v1/operator/autopilot/health", ""},
		{"GET", "/v1/operator/keyring", "relay-factor=3"},
		{"GET", "/v1/connect/ca/roots", ""},
		{"GET", "/v1/snapshot", "stale"},
		{"PUT", "/v1/snapshot", ""},
		{"GET", "/v1/operator/join-tokens", ""},
		{"GET", "/v1/kv/a/b", "recurse"},
		{"GET", "/v1/connect/intentions/exact", "source=a/b/c/d&destination=web"},
		{"GET", "/v1/connect/intentions/check", "source=*&destination=ns/web&source-type=consul"},
		{"GET", "/v1/connect/intentions/match", "by=source&name=web&name=&name=a//b"},
		{"DELETE", "/v1/connect/intentions/exact", "source=web&destination=*"},
		{"GET", "/v1/connect/intentions/x", ""},
		{"PUT", "/v1/agent/service/maintenance/web", "enable=1&reason=%00"},
		{"PUT", "/v1/agent/maintenance", "enable=maybe"},
		{"GET", "/v1/config/ingress-gateway", "index=1&wait=1ms"},
		{"POST", "/v1/snapshot", ""},
		{"PATCH", "/v1/status/leader", ""},
		{"GET", "/v1//catalog/../catalog/services/", ""},
		{"GET", "/v1/catalog/service/%2e%2e", "%zz=1"},
		{"GET", "/metrics", ""},
	} {
		f.Add(s.method, s.path, s.query)
	}
	n := startPeeringNode(f, "n", "dc1", true)
	if _, err := n.client.Catalog().Register(&api.CatalogRegistration{Node: "n", Address: "127.0.0.1",
		Service: &api.AgentService{ID: "web", Service: "web", Tags: []string{"v1"}, Port: 80}}, nil); err != nil {
		f.Fatal(err)
	}
	if _, _, err := n.client.Peerings().GenerateToken(context.Background(), api.PeeringGenerateTokenRequest{PeerName: "p1"}, nil); err != nil {
		f.Fatal(err)
	}
	handler := n.srv.Handler()
	f.Fuzz(func(t *testing.T, method, path, query string) {
		target := path
		if query != "" {
			target += "?" + query
		}
		// The request as net/http's server reads it off the wire: what it
		// refuses there (a bad method, a target that is not a URL) never
		// reaches the API.
		raw := method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil || req.Method != method || req.RequestURI != target {
			return // not one request line, or not this one
		}
		if _, pattern := n.srv.mux.Handler(req); fuzzSkipped[pattern] && method == strings.SplitN(pattern, " ", 2)[0] {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), fuzzRequestTimeout)
		defer cancel()
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req.WithContext(ctx))
		code := rec.Code
		switch {
		case code < 500:
		case code == http.StatusNotImplemented:
		case code == http.StatusServiceUnavailable && ctx.Err() != nil:
		default:
			t.Fatalf("%s %s: got %d %q, want a status below 500 for any input", method, target, code, rec.Body.String())
		}
	})
}
