package httpapi

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
)

// TestWrongMethodHints checks that a wrong method gets a 405 naming the
// methods the path's own route takes, also where the wrong method would
// otherwise fall into another method's wildcard route (GET
// /v1/peering/{name} for /v1/peering/token).
func TestWrongMethodHints(t *testing.T) {
	n := startPeeringNode(t, "n", "dc1", true)
	tests := []struct {
		method, path string
		code         int
		allow        string
		want         string
	}{
		{"PUT", "/v1/peering/token", 405, "POST", "method PUT not allowed on /v1/peering/token: use POST\n"},
		{"GET", "/v1/peering/token", 405, "POST", "use POST\n"},
		{"DELETE", "/v1/peering/establish", 405, "POST", "method DELETE not allowed on /v1/peering/establish: use POST\n"},
		{"GET", "/v1/peering/establish", 405, "POST", "use POST\n"},
		{"POST", "/v1/agent/service/register", 405, "PUT", "method POST not allowed on /v1/agent/service/register: use PUT\n"},
		{"GET", "/v1/agent/service/register", 405, "PUT", "use PUT\n"},
		{"PUT", "/v1/peering/nope", 405, "GET, DELETE", "use GET or DELETE\n"},
		{"POST", "/v1/snapshot", 405, "GET, PUT", "use GET or PUT\n"},
		{"PATCH", "/v1/status/leader", 405, "GET", "use GET\n"},
		// The wildcard routes still serve every other name.
		{"GET", "/v1/peering/nope", 404, "", `Peering not found for "nope"`},
		{"GET", "/v1/agent/service/nope", 404, "", "nope"},
		{"GET", "/v1/nope", 404, "", "no such endpoint GET /v1/nope"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, n.url+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.code || !strings.Contains(string(body), tt.want) {
				t.Errorf("got %d %q, want %d containing %q", resp.StatusCode, body, tt.code, tt.want)
			}
			if got := resp.Header.Get("Allow"); got != tt.allow {
				t.Errorf("got Allow %q, want %q", got, tt.allow)
			}
		})
	}
}

// TestKVIsAnErrorForConsulsClient checks that Consul's client reports an
// error for KV reads instead of a missing key (nil, nil).
func TestKVIsAnErrorForConsulsClient(t *testing.T) {
	n := startPeeringNode(t, "n", "dc1", true)
	pair, _, err := n.client.KV().Get("some/key", nil)
	if err == nil || !strings.Contains(err.Error(), "501") || !strings.Contains(err.Error(), "no KV store") {
		t.Fatalf("KV().Get: got %v, %v; want a 501 error saying there is no KV store", pair, err)
	}
	if _, err := n.client.KV().Put(&api.KVPair{Key: "k", Value: []byte("v")}, nil); err == nil {
		t.Fatal("KV().Put: got no error")
	}
}
