package cli

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeAgent stands in for a peerd agent on the other end of the network:
// it answers "METHOD /path" with canned Consul-shaped JSON and records every
// request it gets. The real daemon is tested against the CLI elsewhere.
type fakeAgent struct {
	url string

	mu  sync.Mutex
	got []gotRequest
}

// gotRequest is what the fake agent received.
type gotRequest struct {
	Method string
	Path   string // escaped
	Query  string
	Body   string
	Token  string
}

// reply is a canned answer; status 0 means 200.
type reply struct {
	status int
	body   string
}

func newFakeAgent(t *testing.T, replies map[string]reply) *fakeAgent {
	t.Helper()
	f := &fakeAgent{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read request body: %v", err)
		}
		f.mu.Lock()
		f.got = append(f.got, gotRequest{
			Method: r.Method,
			Path:   r.URL.EscapedPath(),
			Query:  r.URL.RawQuery,
			Body:   string(body),
			Token:  r.Header.Get("X-Consul-Token"),
		})
		f.mu.Unlock()

		rep, ok := replies[r.Method+" "+r.URL.EscapedPath()]
		if !ok {
			http.Error(w, "fake agent: no reply for "+r.Method+" "+r.URL.EscapedPath(), http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Consul-Index", "12")
		if rep.status != 0 {
			w.WriteHeader(rep.status)
		}
		io.WriteString(w, rep.body)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *fakeAgent) requests() []gotRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]gotRequest(nil), f.got...)
}

// runPeerctl runs the CLI with the given environment and standard input and
// returns what it printed.
func runPeerctl(t *testing.T, environ map[string]string, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut strings.Builder
	err = run(context.Background(), args, &env{
		stdin:  strings.NewReader(stdin),
		stdout: &out,
		stderr: &errOut,
		getenv: func(k string) string { return environ[k] },
	})
	return out.String(), errOut.String(), err
}

// wantRequest is a request the fake agent must receive. Body is compared
// as JSON; "" means the request must have no body.
type wantRequest struct {
	method, path, query, body string
}

const membersJSON = `[
  {"Name":"node-b","Addr":"10.0.0.2","Port":8301,"Tags":{"role":"client","dc":"dc1","build":"0.1.0:abc123","vsn":"2"},"Status":1,"ProtocolMin":1,"ProtocolMax":5,"ProtocolCur":2},
  {"Name":"node-a","Addr":"10.0.0.1","Port":8301,"Tags":{"role":"server","dc":"dc1","build":"0.1.0:abc123","vsn":"2"},"Status":1,"ProtocolMin":1,"ProtocolMax":5,"ProtocolCur":2},
  {"Name":"node-c","Addr":"10.0.0.3","Port":8301,"Tags":{"role":"node","dc":"dc2"},"Status":4},
  {"Name":"consul-1","Addr":"fd00::1","Port":8301,"Tags":{"role":"consul","dc":"dc1","build":"1.17.0:deadbeef","vsn":"2"},"Status":3}
]`

const nodesJSON = `[
  {"ID":"40e4a748-2192-161a-0510-9bf59fe950b5","Node":"node-b","Address":"10.0.0.2","Datacenter":"dc1","TaggedAddresses":{"lan":"10.0.0.2","wan":"198.51.100.2"},"Meta":{"peerd-version":"0.1.0"},"CreateIndex":5,"ModifyIndex":5},
  {"ID":"0a1b2c3d-0000-0000-0000-000000000001","Node":"node-a","Address":"10.0.0.1","Datacenter":"dc1","TaggedAddresses":null,"Meta":null,"CreateIndex":4,"ModifyIndex":4}
]`

const servicesJSON = `{"web":["v2","v1"],"db":[],"peerd":null}`

const serviceDefaultsJSON = `{"Kind":"service-defaults","Name":"web","Protocol":"http","CreateIndex":7,"ModifyIndex":9}`

const serviceDefaultsListJSON = `[` + serviceDefaultsJSON + `,{"Kind":"service-defaults","Name":"api","Protocol":"grpc"}]`

func TestCommands(t *testing.T) {
	tests := []struct {
		name     string
		args     []string // "@name" is replaced by the path of files[name]
		files    map[string]string
		stdin    string
		replies  map[string]reply
		want     []wantRequest
		wantOut  string
		wantErr  string // substring of the error; "" means success
		wantExit int
	}{
		// members
		{
			name:    "members table",
			args:    []string{"members"},
			replies: map[string]reply{"GET /v1/agent/members": {body: membersJSON}},
			want:    []wantRequest{{method: "GET", path: "/v1/agent/members"}},
			wantOut: "" +
				"Node      Address         Status  Type    Build   Protocol  DC\n" +
				"consul-1  [fd00::1]:8301  left    server  1.17.0  2         dc1\n" +
				"node-a    10.0.0.1:8301   alive   server  0.1.0   2         dc1\n" +
				"node-b    10.0.0.2:8301   alive   client  0.1.0   2         dc1\n" +
				"node-c    10.0.0.3:8301   failed  client                    dc2\n",
		},
		{
			name:    "members status filter",
			args:    []string{"members", "-status", "alive|failed"},
			replies: map[string]reply{"GET /v1/agent/members": {body: membersJSON}},
			want:    []wantRequest{{method: "GET", path: "/v1/agent/members"}},
			wantOut: "" +
				"Node    Address        Status  Type    Build  Protocol  DC\n" +
				"node-a  10.0.0.1:8301  alive   server  0.1.0  2         dc1\n" +
				"node-b  10.0.0.2:8301  alive   client  0.1.0  2         dc1\n" +
				"node-c  10.0.0.3:8301  failed  client                   dc2\n",
		},
		{
			name:    "members detailed",
			args:    []string{"members", "-detailed", "-status=^failed$"},
			replies: map[string]reply{"GET /v1/agent/members": {body: membersJSON}},
			want:    []wantRequest{{method: "GET", path: "/v1/agent/members"}},
			wantOut: "" +
				"Node    Address        Status  Tags\n" +
				"node-c  10.0.0.3:8301  failed  dc=dc2,role=node\n",
		},
		{
			name:    "members json keeps the raw fields of the kept members",
			args:    []string{"members", "-format", "json", "-status", "failed"},
			replies: map[string]reply{"GET /v1/agent/members": {body: membersJSON}},
			want:    []wantRequest{{method: "GET", path: "/v1/agent/members"}},
			wantOut: "[\n    {\n        \"Name\": \"node-c\",\n        \"Addr\": \"10.0.0.3\",\n        \"Port\": 8301,\n" +
				"        \"Tags\": {\n            \"role\": \"node\",\n            \"dc\": \"dc2\"\n        },\n        \"Status\": 4\n    }\n]\n",
		},
		{
			name:     "members bad status regexp",
			args:     []string{"members", "-status", "["},
			wantErr:  "invalid -status regular expression",
			wantExit: 2,
		},
		{
			name:     "members unknown format",
			args:     []string{"members", "-format", "yaml"},
			wantErr:  `unknown -format "yaml"`,
			wantExit: 2,
		},
		{
			name:     "members agent error",
			args:     []string{"members"},
			replies:  map[string]reply{"GET /v1/agent/members": {status: 500, body: "rpc error: no leader\n"}},
			want:     []wantRequest{{method: "GET", path: "/v1/agent/members"}},
			wantErr:  "list members: Unexpected response code: 500 (rpc error: no leader)",
			wantExit: 1,
		},

		// keyring
		{
			name: "keyring list",
			args: []string{"keyring", "list"},
			replies: map[string]reply{"GET /v1/operator/keyring": {body: `[{"WAN":false,"Datacenter":"dc1","Segment":"",` +
				`"Messages":{"n3":"no answer: context deadline exceeded"},"Keys":{"bmV3":2,"b2xk":1},"PrimaryKeys":{"bmV3":1,"b2xk":1},"NumNodes":2}]`}},
			want: []wantRequest{{method: "GET", path: "/v1/operator/keyring"}},
			wantOut: "" +
				"LAN pool of dc1: 2 nodes\n" +
				"Key   Primary  Installed\n" +
				"b2xk  on 1/2   1/2\n" +
				"bmV3  on 1/2   2/2\n" +
				"\n" +
				"Node  Error\n" +
				"n3    no answer: context deadline exceeded\n",
		},
		{
			name:    "keyring list json",
			args:    []string{"keyring", "list", "-format", "json"},
			replies: map[string]reply{"GET /v1/operator/keyring": {body: `[{"Keys":{"a2V5":1},"PrimaryKeys":{"a2V5":1},"NumNodes":1}]`}},
			want:    []wantRequest{{method: "GET", path: "/v1/operator/keyring"}},
			wantOut: "[\n    {\n        \"Keys\": {\n            \"a2V5\": 1\n        },\n        \"PrimaryKeys\": {\n            \"a2V5\": 1\n        },\n        \"NumNodes\": 1\n    }\n]\n",
		},
		{
			name:    "keyring install",
			args:    []string{"keyring", "install", "bmV3"},
			replies: map[string]reply{"POST /v1/operator/keyring": {body: `[{"Keys":{"bmV3":3},"PrimaryKeys":{"b2xk":3},"NumNodes":3}]`}},
			want:    []wantRequest{{method: "POST", path: "/v1/operator/keyring", body: `{"Key":"bmV3"}`}},
			wantOut: "Installed the key on 3 nodes\n",
		},
		{
			name:    "keyring use",
			args:    []string{"keyring", "use", "bmV3"},
			replies: map[string]reply{"PUT /v1/operator/keyring": {body: `[{"NumNodes":3}]`}},
			want:    []wantRequest{{method: "PUT", path: "/v1/operator/keyring", body: `{"Key":"bmV3"}`}},
			wantOut: "Made the key primary on 3 nodes\n",
		},
		{
			name:     "keyring remove of the primary key",
			args:     []string{"keyring", "remove", "bmV3"},
			replies:  map[string]reply{"DELETE /v1/operator/keyring": {status: 400, body: "the key is the primary gossip key"}},
			want:     []wantRequest{{method: "DELETE", path: "/v1/operator/keyring", body: `{"Key":"bmV3"}`}},
			wantErr:  "remove the gossip key: Unexpected response code: 400 (the key is the primary gossip key)",
			wantExit: 1,
		},
		{
			name:     "keyring install without a key",
			args:     []string{"keyring", "install"},
			wantErr:  "missing argument: want the base64 gossip key",
			wantExit: 2,
		},

		// dataplane
		{
			name: "dataplane status",
			args: []string{"dataplane", "status"},
			replies: map[string]reply{"GET /v1/agent/dataplane": {body: `{"Enabled":true,"Status":{"Kernel":"6.12.0","PinDir":"/sys/fs/bpf/peerd",` +
				`"Capture":{"Enabled":true,"Loaded":true,"Reused":true,"AttachMode":"cgroup-link","Maps":{"vips":2},"Counters":{"redirected":7},"Routes":["unreachable 240.0.0.0/4"]},` +
				`"FastPath":{"Enabled":true,"Loaded":false,"Reason":"no sk_msg"},"TC":{"Enabled":false,"Loaded":false},` +
				`"Inbound":{"Enabled":true,"Loaded":true,"AttachMode":"netns-link","Interfaces":{"eth0":"tcx"}}}}`}},
			want: []wantRequest{{method: "GET", path: "/v1/agent/dataplane"}},
			wantOut: "" +
				"Kernel: 6.12.0   Pins: /sys/fs/bpf/peerd\n\n" +
				"Layer     Enabled  State                 Attach       Reason\n" +
				"capture   true     loaded (reused pins)  cgroup-link\n" +
				"fastpath  true     OFF                                no sk_msg\n" +
				"tc        false    off\n" +
				"inbound   true     loaded                netns-link\n" +
				"\n" +
				"Layer    Map / counter   Value\n" +
				"capture  map vips        2\n" +
				"capture  redirected      7\n" +
				"capture  route           unreachable 240.0.0.0/4\n" +
				"inbound  interface eth0  tcx\n",
		},
		{
			name: "dataplane status with workload namespaces",
			args: []string{"dataplane", "status"},
			replies: map[string]reply{"GET /v1/agent/dataplane": {body: `{"Enabled":true,"Status":{"Kernel":"6.18.0","PinDir":"/sys/fs/bpf/peerd",` +
				`"Capture":{"Enabled":true,"Loaded":true,"AttachMode":"cgroup-link"},"FastPath":{},"TC":{},"Inbound":{}},` +
				`"Workloads":[{"Cookie":4097,"Inode":4026532301,"PID":812,"Owner":"web","Ready":true,"IPv6":true,` +
				`"Listeners":["dns udp+tcp 127.0.0.1:53","transparent tcp 127.0.0.1:15001"]},` +
				`{"Cookie":4098,"Inode":4026532402,"PID":901,"Ready":false,"IPv6":false,"Listeners":[],` +
				`"Failing":{"transparent tcp 127.0.0.1:15001":"address already in use"}}]}`}},
			want: []wantRequest{{method: "GET", path: "/v1/agent/dataplane"}},
			wantOut: "" +
				"Kernel: 6.18.0   Pins: /sys/fs/bpf/peerd\n\n" +
				"Layer     Enabled  State   Attach       Reason\n" +
				"capture   true     loaded  cgroup-link\n" +
				"fastpath  false    off\n" +
				"tc        false    off\n" +
				"inbound   false    off\n" +
				"\n" +
				"Netns cookie  Inode       PID  Owner  Ready  Listeners\n" +
				"4097          4026532301  812  web    yes    dns udp+tcp 127.0.0.1:53, transparent tcp 127.0.0.1:15001\n" +
				"4098          4026532402  901  -      no     (IPv4 only)\n" +
				"\n" +
				"Netns cookie  Failing listener                 Error\n" +
				"4098          transparent tcp 127.0.0.1:15001  address already in use\n",
		},
		{
			name:    "dataplane status without a dataplane",
			args:    []string{"dataplane", "status"},
			replies: map[string]reply{"GET /v1/agent/dataplane": {body: `{"Enabled":false}`}},
			want:    []wantRequest{{method: "GET", path: "/v1/agent/dataplane"}},
			wantOut: "No eBPF dataplane on this node (start the agent with -cgroup-path or -dataplane-interface).\n",
		},

		// catalog
		{
			name:    "catalog services",
			args:    []string{"catalog", "services"},
			replies: map[string]reply{"GET /v1/catalog/services": {body: servicesJSON}},
			want:    []wantRequest{{method: "GET", path: "/v1/catalog/services"}},
			wantOut: "db\npeerd\nweb\n",
		},
		{
			name:    "catalog services tags from a peer",
			args:    []string{"catalog", "services", "-tags", "-peer", "cluster-02"},
			replies: map[string]reply{"GET /v1/catalog/services": {body: servicesJSON}},
			want:    []wantRequest{{method: "GET", path: "/v1/catalog/services", query: "peer=cluster-02"}},
			wantOut: "db\npeerd\nweb    v1,v2\n",
		},
		{
			name:    "catalog services json",
			args:    []string{"catalog", "services", "--format=json"},
			replies: map[string]reply{"GET /v1/catalog/services": {body: servicesJSON}},
			want:    []wantRequest{{method: "GET", path: "/v1/catalog/services"}},
			wantOut: "{\n    \"web\": [\n        \"v2\",\n        \"v1\"\n    ],\n    \"db\": [],\n    \"peerd\": null\n}\n",
		},
		{
			name:    "catalog nodes",
			args:    []string{"catalog", "nodes"},
			replies: map[string]reply{"GET /v1/catalog/nodes": {body: nodesJSON}},
			want:    []wantRequest{{method: "GET", path: "/v1/catalog/nodes"}},
			wantOut: "" +
				"Node    ID        Address   DC\n" +
				"node-a  0a1b2c3d  10.0.0.1  dc1\n" +
				"node-b  40e4a748  10.0.0.2  dc1\n",
		},
		{
			name:    "catalog nodes detailed",
			args:    []string{"catalog", "nodes", "-detailed"},
			replies: map[string]reply{"GET /v1/catalog/nodes": {body: nodesJSON}},
			want:    []wantRequest{{method: "GET", path: "/v1/catalog/nodes"}},
			wantOut: "" +
				"Node    ID                                    Address   DC   TaggedAddresses                 Meta\n" +
				"node-a  0a1b2c3d-0000-0000-0000-000000000001  10.0.0.1  dc1\n" +
				"node-b  40e4a748-2192-161a-0510-9bf59fe950b5  10.0.0.2  dc1  lan=10.0.0.2, wan=198.51.100.2  peerd-version=0.1.0\n",
		},
		{
			name:     "catalog unknown subcommand",
			args:     []string{"catalog", "node"},
			wantErr:  `unknown command "node" for "peerctl catalog"; did you mean "nodes"?`,
			wantExit: 2,
		},

		// services
		{
			name: "services register from flags",
			args: []string{"services", "register", "-name", "web", "-id", "web-1", "-address", "10.0.0.5",
				"-port", "8080", "-tag", "v1", "-tag", "a,b", "-meta", "team=payments", "-meta", "q=x=y"},
			replies: map[string]reply{"PUT /v1/agent/service/register": {}},
			want: []wantRequest{{method: "PUT", path: "/v1/agent/service/register",
				body: `{"ID":"web-1","Name":"web","Address":"10.0.0.5","Port":8080,"Tags":["v1","a,b"],"Meta":{"team":"payments","q":"x=y"}}`}},
			wantOut: "Registered service: web\n",
		},
		{
			name:    "services register name only",
			args:    []string{"services", "register", "-name=web"},
			replies: map[string]reply{"PUT /v1/agent/service/register": {}},
			want:    []wantRequest{{method: "PUT", path: "/v1/agent/service/register", body: `{"Name":"web"}`}},
			wantOut: "Registered service: web\n",
		},
		{
			name: "services register files",
			args: []string{"services", "register", "@web.hcl", "@more.json"},
			files: map[string]string{
				"web.hcl":   "service {\n  name = \"web\"\n  port = 8080\n  tags = [\"v1\"]\n}\n",
				"more.json": `{"services": [{"Name": "db", "Port": 5432}, {"ID": "cache-1", "Name": "cache"}]}`,
			},
			replies: map[string]reply{"PUT /v1/agent/service/register": {}},
			want: []wantRequest{
				{method: "PUT", path: "/v1/agent/service/register", body: `{"name":"web","port":8080,"tags":["v1"]}`},
				{method: "PUT", path: "/v1/agent/service/register", body: `{"Name":"db","Port":5432}`},
				{method: "PUT", path: "/v1/agent/service/register", body: `{"ID":"cache-1","Name":"cache"}`},
			},
			wantOut: "Registered service: web\nRegistered service: db\nRegistered service: cache\n",
		},
		{
			name:     "services register bad file sends nothing",
			args:     []string{"services", "register", "@web.hcl", "@bad.json"},
			files:    map[string]string{"web.hcl": "service {\n  name = \"web\"\n}\n", "bad.json": `{"port": 80}`},
			wantErr:  "no service definition found",
			wantExit: 1,
		},
		{
			name:     "services register agent refuses",
			args:     []string{"services", "register", "-name", "web"},
			replies:  map[string]reply{"PUT /v1/agent/service/register": {status: 400, body: "Invalid Service Meta: Couldn't load metadata pair\n"}},
			want:     []wantRequest{{method: "PUT", path: "/v1/agent/service/register", body: `{"Name":"web"}`}},
			wantErr:  `register service "web": Unexpected response code: 400 (Invalid Service Meta: Couldn't load metadata pair)`,
			wantExit: 1,
		},
		{
			name:     "services register needs a name",
			args:     []string{"services", "register", "-port", "80"},
			wantErr:  "missing required flag -name",
			wantExit: 2,
		},
		{
			name:     "services register files and flags",
			args:     []string{"services", "register", "-name", "web", "web.hcl"},
			wantErr:  "not both",
			wantExit: 2,
		},
		{
			name:     "services register bad port",
			args:     []string{"services", "register", "-name", "web", "-port", "70000"},
			wantErr:  "invalid -port 70000",
			wantExit: 2,
		},
		{
			name:     "services register bad meta",
			args:     []string{"services", "register", "-name", "web", "-meta", "team"},
			wantErr:  `invalid argument "team" for "-meta" flag: want key=value`,
			wantExit: 2,
		},
		{
			name:    "services deregister by id",
			args:    []string{"services", "deregister", "-id", "web/1"},
			replies: map[string]reply{"PUT /v1/agent/service/deregister/web%2F1": {}},
			want:    []wantRequest{{method: "PUT", path: "/v1/agent/service/deregister/web%2F1"}},
			wantOut: "Deregistered service: web/1\n",
		},
		{
			name:  "services deregister from file uses id else name",
			args:  []string{"services", "deregister", "@svcs.hcl"},
			files: map[string]string{"svcs.hcl": "services {\n  id = \"web-1\"\n  name = \"web\"\n}\nservices {\n  name = \"db\"\n}\n"},
			replies: map[string]reply{
				"PUT /v1/agent/service/deregister/web-1": {},
				"PUT /v1/agent/service/deregister/db":    {},
			},
			want: []wantRequest{
				{method: "PUT", path: "/v1/agent/service/deregister/web-1"},
				{method: "PUT", path: "/v1/agent/service/deregister/db"},
			},
			wantOut: "Deregistered service: web-1\nDeregistered service: db\n",
		},
		{
			name:     "services deregister needs id or files",
			args:     []string{"services", "deregister"},
			wantErr:  "missing required flag -id",
			wantExit: 2,
		},
		{
			name:     "services deregister unknown service",
			args:     []string{"services", "deregister", "-id", "nope"},
			replies:  map[string]reply{"PUT /v1/agent/service/deregister/nope": {status: 404, body: `Unknown service ID "nope". Ensure that the service ID is passed, not the service name.`}},
			want:     []wantRequest{{method: "PUT", path: "/v1/agent/service/deregister/nope"}},
			wantErr:  `deregister service "nope": Unexpected response code: 404 (Unknown service ID "nope".`,
			wantExit: 1,
		},

		// config
		{
			name: "config write hcl is sent as json",
			args: []string{"config", "write", "@exported.hcl"},
			files: map[string]string{"exported.hcl": `
Kind = "exported-services"
Name = "default"
Services = [
  {
    Name = "web"
    Consumers = [
      { Peer = "cluster-02" }
    ]
  }
]
`},
			replies: map[string]reply{"PUT /v1/config": {body: "true"}},
			want: []wantRequest{{method: "PUT", path: "/v1/config",
				body: `{"Kind":"exported-services","Name":"default","Services":[{"Name":"web","Consumers":[{"Peer":"cluster-02"}]}]}`}},
			wantOut: "Config entry written: exported-services/default\n",
		},
		{
			name:    "config write hcl block is sent as a list of one",
			args:    []string{"config", "write", "@web.hcl"},
			files:   map[string]string{"web.hcl": "kind = \"service-defaults\"\nname = \"web\"\nMeshGateway {\n  Mode = \"local\"\n}\n"},
			replies: map[string]reply{"PUT /v1/config": {body: "true"}},
			want: []wantRequest{{method: "PUT", path: "/v1/config",
				body: `{"kind":"service-defaults","name":"web","MeshGateway":[{"Mode":"local"}]}`}},
			wantOut: "Config entry written: service-defaults/web\n",
		},
		{
			name:    "config write stdin with cas",
			args:    []string{"config", "write", "-cas", "-modify-index", "7", "-"},
			stdin:   `{"Kind": "service-defaults", "Name": "web", "Protocol": "http"}`,
			replies: map[string]reply{"PUT /v1/config": {body: "true"}},
			want: []wantRequest{{method: "PUT", path: "/v1/config", query: "cas=7",
				body: `{"Kind":"service-defaults","Name":"web","Protocol":"http"}`}},
			wantOut: "Config entry written: service-defaults/web\n",
		},
		{
			name:     "config write cas refused",
			args:     []string{"config", "write", "-cas", "-modify-index=3", "-"},
			stdin:    `{"Kind": "service-defaults", "Name": "web"}`,
			replies:  map[string]reply{"PUT /v1/config": {body: "false"}},
			want:     []wantRequest{{method: "PUT", path: "/v1/config", query: "cas=3", body: `{"Kind":"service-defaults","Name":"web"}`}},
			wantErr:  "Config entry not updated: service-defaults/web",
			wantExit: 1,
		},
		{
			name:     "config write without kind",
			args:     []string{"config", "write", "-"},
			stdin:    `{"Name": "web"}`,
			wantErr:  "config entry in <stdin> has no Kind",
			wantExit: 1,
		},
		{
			name:     "config write bad hcl",
			args:     []string{"config", "write", "-"},
			stdin:    "Kind = \n",
			wantErr:  "<stdin>",
			wantExit: 1,
		},
		{
			name:     "config write modify-index without cas",
			args:     []string{"config", "write", "-modify-index", "3", "-"},
			wantErr:  "-modify-index needs -cas",
			wantExit: 2,
		},
		{
			name:     "config write no file",
			args:     []string{"config", "write"},
			wantErr:  "missing argument: want one config entry file, or - for standard input",
			wantExit: 2,
		},
		{
			name:     "config write agent rejects",
			args:     []string{"config", "write", "-"},
			stdin:    `{"Kind": "exported-services", "Name": "default", "Services": [{"Name": "web", "Consumers": [{}]}]}`,
			replies:  map[string]reply{"PUT /v1/config": {status: 400, body: "Services[0].Consumers[0]: must set Peer, Partition or SamenessGroup\n"}},
			want:     []wantRequest{{method: "PUT", path: "/v1/config", body: `{"Kind":"exported-services","Name":"default","Services":[{"Name":"web","Consumers":[{}]}]}`}},
			wantErr:  "write config entry exported-services/default: Unexpected response code: 400 (Services[0].Consumers[0]: must set Peer, Partition or SamenessGroup)",
			wantExit: 1,
		},
		{
			name:    "config read",
			args:    []string{"config", "read", "-kind", "service-defaults", "-name", "web"},
			replies: map[string]reply{"GET /v1/config/service-defaults/web": {body: serviceDefaultsJSON}},
			want:    []wantRequest{{method: "GET", path: "/v1/config/service-defaults/web"}},
			wantOut: "{\n    \"Kind\": \"service-defaults\",\n    \"Name\": \"web\",\n    \"Protocol\": \"http\",\n    \"CreateIndex\": 7,\n    \"ModifyIndex\": 9\n}\n",
		},
		{
			name:     "config read missing name",
			args:     []string{"config", "read", "-kind", "service-defaults"},
			wantErr:  "missing required flag -name\n\nExample:\n  peerctl config read -kind service-defaults -name web",
			wantExit: 2,
		},
		{
			name:     "config read missing both",
			args:     []string{"config", "read"},
			wantErr:  "missing required flags -kind, -name",
			wantExit: 2,
		},
		{
			name:     "config read not found",
			args:     []string{"config", "read", "-kind", "service-defaults", "-name", "nope"},
			replies:  map[string]reply{"GET /v1/config/service-defaults/nope": {status: 404, body: `Config entry not found for "service-defaults" / "nope"`}},
			want:     []wantRequest{{method: "GET", path: "/v1/config/service-defaults/nope"}},
			wantErr:  `read config entry service-defaults/nope: Unexpected response code: 404 (Config entry not found for "service-defaults" / "nope")`,
			wantExit: 1,
		},
		{
			name:    "config list",
			args:    []string{"config", "list", "-kind", "service-defaults"},
			replies: map[string]reply{"GET /v1/config/service-defaults": {body: serviceDefaultsListJSON}},
			want:    []wantRequest{{method: "GET", path: "/v1/config/service-defaults"}},
			wantOut: "web\napi\n",
		},
		{
			name:    "config list empty",
			args:    []string{"config", "list", "-kind", "exported-services"},
			replies: map[string]reply{"GET /v1/config/exported-services": {body: "[]"}},
			want:    []wantRequest{{method: "GET", path: "/v1/config/exported-services"}},
			wantOut: "",
		},
		{
			name:    "config list json",
			args:    []string{"config", "list", "-kind", "service-defaults", "-format", "json"},
			replies: map[string]reply{"GET /v1/config/service-defaults": {body: `[{"Kind":"service-defaults","Name":"web"}]`}},
			want:    []wantRequest{{method: "GET", path: "/v1/config/service-defaults"}},
			wantOut: "[\n    {\n        \"Kind\": \"service-defaults\",\n        \"Name\": \"web\"\n    }\n]\n",
		},
		{
			name:     "config list missing kind",
			args:     []string{"config", "list"},
			wantErr:  "missing required flag -kind",
			wantExit: 2,
		},
		{
			name:    "config delete",
			args:    []string{"config", "delete", "-kind", "service-defaults", "-name", "web"},
			replies: map[string]reply{"DELETE /v1/config/service-defaults/web": {body: "{}"}},
			want:    []wantRequest{{method: "DELETE", path: "/v1/config/service-defaults/web"}},
			wantOut: "Config entry deleted: service-defaults/web\n",
		},
		{
			name:    "config delete cas",
			args:    []string{"config", "delete", "-kind", "service-defaults", "-name", "web", "-cas", "-modify-index", "9"},
			replies: map[string]reply{"DELETE /v1/config/service-defaults/web": {body: "true"}},
			want:    []wantRequest{{method: "DELETE", path: "/v1/config/service-defaults/web", query: "cas=9"}},
			wantOut: "Config entry deleted: service-defaults/web\n",
		},
		{
			name:     "config delete cas refused",
			args:     []string{"config", "delete", "-kind", "service-defaults", "-name", "web", "-cas", "-modify-index", "8"},
			replies:  map[string]reply{"DELETE /v1/config/service-defaults/web": {body: "false"}},
			want:     []wantRequest{{method: "DELETE", path: "/v1/config/service-defaults/web", query: "cas=8"}},
			wantErr:  "Config entry not deleted: service-defaults/web",
			wantExit: 1,
		},
		{
			name:    "config names are escaped",
			args:    []string{"config", "read", "-kind", "service-defaults", "-name", "a/b c"},
			replies: map[string]reply{"GET /v1/config/service-defaults/a%2Fb%20c": {body: "{}"}},
			want:    []wantRequest{{method: "GET", path: "/v1/config/service-defaults/a%2Fb%20c"}},
			wantOut: "{}\n",
		},

		// the rest
		{
			name:     "unknown command",
			args:     []string{"member"},
			wantErr:  `unknown command "member" for "peerctl"; did you mean "members"?`,
			wantExit: 2,
		},
		{
			name:     "unknown flag is reported as typed",
			args:     []string{"members", "-nmae", "x"},
			wantErr:  "unknown flag: -nmae",
			wantExit: 2,
		},
		{
			name:     "extra argument",
			args:     []string{"members", "web"},
			wantErr:  `unexpected argument "web"`,
			wantExit: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agent := newFakeAgent(t, tt.replies)
			dir := t.TempDir()
			for name, data := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				if name, ok := strings.CutPrefix(a, "@"); ok {
					a = filepath.Join(dir, name)
				}
				args[i] = a
			}

			out, _, err := runPeerctl(t, map[string]string{EnvHTTPAddr: agent.url}, tt.stdin, args...)

			if tt.wantErr == "" && err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
			if got := ExitCode(err); got != tt.wantExit {
				t.Errorf("got exit code %d, want %d", got, tt.wantExit)
			}
			if out != tt.wantOut {
				t.Errorf("got output\n%s\nwant\n%s", out, tt.wantOut)
			}

			got := agent.requests()
			if len(got) != len(tt.want) {
				t.Fatalf("got %d requests %+v, want %d", len(got), got, len(tt.want))
			}
			for i, w := range tt.want {
				g := got[i]
				if g.Method != w.method || g.Path != w.path || g.Query != w.query {
					t.Errorf("request %d: got %s %s?%s, want %s %s?%s", i, g.Method, g.Path, g.Query, w.method, w.path, w.query)
				}
				switch {
				case w.body == "" && g.Body != "":
					t.Errorf("request %d: got body %s, want none", i, g.Body)
				case w.body != "" && !sameJSON(t, []byte(g.Body), []byte(w.body)):
					t.Errorf("request %d: got body %s, want %s", i, g.Body, w.body)
				}
			}
		})
	}
}

func TestAgentAddressAndToken(t *testing.T) {
	refused := refusedAddr(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		environ   func(agentURL string) map[string]string
		args      func(agentURL string) []string
		wantToken string
	}{
		{
			name:    "env address",
			environ: func(u string) map[string]string { return map[string]string{EnvHTTPAddr: u} },
			args:    func(string) []string { return []string{"catalog", "services"} },
		},
		{
			name:    "flag beats env",
			environ: func(string) map[string]string { return map[string]string{EnvHTTPAddr: refused} },
			args:    func(u string) []string { return []string{"-http-addr", u, "catalog", "services"} },
		},
		{
			name:    "flag after the command, host:port form",
			environ: func(string) map[string]string { return nil },
			args: func(u string) []string {
				return []string{"catalog", "services", "-http-addr=" + strings.TrimPrefix(u, "http://")}
			},
		},
		{
			name: "env token",
			environ: func(u string) map[string]string {
				return map[string]string{EnvHTTPAddr: u, EnvHTTPToken: "env-token"}
			},
			args:      func(string) []string { return []string{"catalog", "services"} },
			wantToken: "env-token",
		},
		{
			name: "flag token beats env",
			environ: func(u string) map[string]string {
				return map[string]string{EnvHTTPAddr: u, EnvHTTPToken: "env-token"}
			},
			args:      func(string) []string { return []string{"-token", "flag-token", "catalog", "services"} },
			wantToken: "flag-token",
		},
		{
			name: "token file beats env",
			environ: func(u string) map[string]string {
				return map[string]string{EnvHTTPAddr: u, EnvHTTPToken: "env-token", EnvConsulHTTPToken: "consul-token"}
			},
			args:      func(string) []string { return []string{"-token-file", tokenFile, "catalog", "services"} },
			wantToken: "file-token",
		},
		{
			name: "peerd's env beats Consul's",
			environ: func(u string) map[string]string {
				return map[string]string{EnvHTTPAddr: u, EnvHTTPToken: "env-token", EnvConsulHTTPToken: "consul-token"}
			},
			args:      func(string) []string { return []string{"catalog", "services"} },
			wantToken: "env-token",
		},
		{
			name: "Consul's env token beats Consul's token file",
			environ: func(u string) map[string]string {
				return map[string]string{EnvHTTPAddr: u, EnvConsulHTTPToken: "consul-token", EnvConsulHTTPTokenFile: tokenFile}
			},
			args:      func(string) []string { return []string{"catalog", "services"} },
			wantToken: "consul-token",
		},
		{
			name: "Consul's token file",
			environ: func(u string) map[string]string {
				return map[string]string{EnvHTTPAddr: u, EnvConsulHTTPTokenFile: tokenFile}
			},
			args:      func(string) []string { return []string{"catalog", "services"} },
			wantToken: "file-token",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agent := newFakeAgent(t, map[string]reply{"GET /v1/catalog/services": {body: `{"web":[]}`}})
			out, _, err := runPeerctl(t, tt.environ(agent.url), "", tt.args(agent.url)...)
			if err != nil {
				t.Fatal(err)
			}
			if out != "web\n" {
				t.Errorf("got output %q, want %q", out, "web\n")
			}
			got := agent.requests()
			if len(got) != 1 {
				t.Fatalf("got %d requests, want 1", len(got))
			}
			if got[0].Token != tt.wantToken {
				t.Errorf("got token %q, want %q", got[0].Token, tt.wantToken)
			}
		})
	}
}

func TestAgentNotRunning(t *testing.T) {
	addr := refusedAddr(t)
	_, _, err := runPeerctl(t, map[string]string{EnvHTTPAddr: addr}, "", "members")
	want := "could not reach peerd at http://" + addr + ": is the agent running? set -http-addr or PEERD_HTTP_ADDR"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error containing %q", err, want)
	}
	if got := ExitCode(err); got != 1 {
		t.Errorf("got exit code %d, want 1", got)
	}
}

func TestHelpAndVersion(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantOut []string
	}{
		{name: "root help", args: []string{"-help"}, wantOut: []string{"members", "catalog", "services", "config", "PEERD_HTTP_ADDR"}},
		{name: "bare group prints help", args: []string{"config"}, wantOut: []string{"write", "read", "list", "delete"}},
		{name: "command help", args: []string{"config", "read", "-h"}, wantOut: []string{"\n      -kind string", "peerctl config read -kind service-defaults -name web"}},
		{name: "help command", args: []string{"help", "members"}, wantOut: []string{"-status string"}},
		{name: "version", args: []string{"version"}, wantOut: []string{"peerctl ", "Go go1."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runPeerctl(t, nil, "", tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("got output\n%s\nwant it to contain %q", out, w)
				}
			}
		})
	}
}
