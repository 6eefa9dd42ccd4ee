package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

const peeringJSON = `{"ID":"9e8d1c6e-57a4-4d4b-a6c2-3f1f1f1f1f1f","Name":"cluster-02","Partition":"default",
"Meta":{"env":"prod","team":"net"},"State":"ACTIVE","PeerID":"1f1f1f1f-0000-4000-8000-000000000002",
"PeerCAPems":["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"],"PeerServerName":"server.dc2.peering.abc.peerd",
"PeerServerAddresses":["10.0.0.5:8503","10.0.0.6:8503"],
"StreamStatus":{"ImportedServices":["api","db"],"ExportedServices":["web"],"LastHeartbeat":"2030-01-02T03:04:05Z","LastReceive":"2030-01-02T03:04:06Z","LastSend":null},
"Remote":{"Partition":"","Datacenter":"dc2"},"CreateIndex":10,"ModifyIndex":12,"LastError":"stream reset","ReplicationLagMs":1500}`

const peeringListJSON = `[` + peeringJSON + `,{"ID":"x","Name":"b-peer","State":"PENDING","StreamStatus":{"ImportedServices":[],"ExportedServices":[]},"Remote":{},"CreateIndex":3,"ModifyIndex":3}]`

func TestPeeringCommands(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		replies  map[string]reply
		want     []wantRequest
		wantOut  string
		wantOuts []string // substrings, when the whole output is not compared
		wantErr  string
		wantExit int
	}{
		{
			name:    "generate-token pretty prints the token alone",
			args:    []string{"peering", "generate-token", "-name", "cluster-02", "-meta", "env=prod", "-meta", "team=net", "-server-external-addresses", "1.2.3.4:8503, 5.6.7.8:8503", "-expires-in", "90m"},
			replies: map[string]reply{"POST /v1/peering/token": {body: `{"PeeringToken":"dG9rZW4="}`}},
			want: []wantRequest{{method: "POST", path: "/v1/peering/token",
				body: `{"PeerName":"cluster-02","Meta":{"env":"prod","team":"net"},"ServerExternalAddresses":["1.2.3.4:8503","5.6.7.8:8503"],"ExpiresIn":"1h30m0s"}`}},
			wantOut: "dG9rZW4=\n",
		},
		{
			name:    "generate-token json",
			args:    []string{"peering", "generate-token", "-name", "cluster-02", "-format", "json"},
			replies: map[string]reply{"POST /v1/peering/token": {body: `{"PeeringToken":"dG9rZW4="}`}},
			want:    []wantRequest{{method: "POST", path: "/v1/peering/token", body: `{"PeerName":"cluster-02"}`}},
			wantOut: "{\n    \"PeeringToken\": \"dG9rZW4=\"\n}\n",
		},
		{
			name:     "generate-token without name",
			args:     []string{"peering", "generate-token"},
			wantErr:  "missing required flag -name",
			wantExit: 2,
		},
		{
			name:     "generate-token agent refuses",
			args:     []string{"peering", "generate-token", "-name", "Bad"},
			replies:  map[string]reply{"POST /v1/peering/token": {status: 400, body: "Bad is not a valid peer name: ..."}},
			want:     []wantRequest{{method: "POST", path: "/v1/peering/token", body: `{"PeerName":"Bad"}`}},
			wantErr:  "Unexpected response code: 400 (Bad is not a valid peer name",
			wantExit: 1,
		},
		{
			name:    "establish",
			args:    []string{"peering", "establish", "-name", "cluster-01", "-peering-token", "dG9rZW4=", "-meta", "a=b"},
			replies: map[string]reply{"POST /v1/peering/establish": {body: `{}`}},
			want: []wantRequest{{method: "POST", path: "/v1/peering/establish",
				body: `{"PeerName":"cluster-01","PeeringToken":"dG9rZW4=","Meta":{"a":"b"}}`}},
			wantOut: "Successfully established peering connection with cluster-01\n",
		},
		{
			name:     "establish with a used token",
			args:     []string{"peering", "establish", "-name", "cluster-01", "-peering-token", "dG9rZW4="},
			replies:  map[string]reply{"POST /v1/peering/establish": {status: 403, body: "peering token already used or superseded: generate a new peering token"}},
			want:     []wantRequest{{method: "POST", path: "/v1/peering/establish", body: `{"PeerName":"cluster-01","PeeringToken":"dG9rZW4="}`}},
			wantErr:  "403 (peering token already used or superseded: generate a new peering token)",
			wantExit: 1,
		},
		{
			name:     "establish without token",
			args:     []string{"peering", "establish", "-name", "cluster-01"},
			wantErr:  "missing required flag -peering-token",
			wantExit: 2,
		},
		{
			name:    "list",
			args:    []string{"peering", "list"},
			replies: map[string]reply{"GET /v1/peerings": {body: peeringListJSON}},
			want:    []wantRequest{{method: "GET", path: "/v1/peerings"}},
			wantOut: "" +
				"Name        State    Imported Svcs  Exported Svcs  Meta\n" +
				"b-peer      PENDING  0              0\n" +
				"cluster-02  ACTIVE   2              1              env=prod,team=net\n",
		},
		{
			name:    "list empty",
			args:    []string{"peering", "list"},
			replies: map[string]reply{"GET /v1/peerings": {body: `[]`}},
			want:    []wantRequest{{method: "GET", path: "/v1/peerings"}},
			wantOut: "There are no peering connections.\n",
		},
		{
			name:    "list json",
			args:    []string{"peering", "list", "-format", "json"},
			replies: map[string]reply{"GET /v1/peerings": {body: `[]`}},
			want:    []wantRequest{{method: "GET", path: "/v1/peerings"}},
			wantOut: "[]\n",
		},
		{
			name:    "read",
			args:    []string{"peering", "read", "-name", "cluster-02"},
			replies: map[string]reply{"GET /v1/peering/cluster-02": {body: peeringJSON}},
			want:    []wantRequest{{method: "GET", path: "/v1/peering/cluster-02"}},
			wantOuts: []string{
				"Name:                  cluster-02\n",
				"ID:                    9e8d1c6e-57a4-4d4b-a6c2-3f1f1f1f1f1f\n",
				"State:                 ACTIVE\nMeta:\n    env=prod\n    team=net\n",
				"Peer ID:               1f1f1f1f-0000-4000-8000-000000000002\n",
				"Peer Server Name:      server.dc2.peering.abc.peerd\n",
				"Peer CA Pems:          1\n",
				"Peer Server Addresses:\n    10.0.0.5:8503\n    10.0.0.6:8503\n",
				"Imported Services:     2\nExported Services:     1\n",
				"Last Send:             never\n",
				"Last Error:            stream reset\n",
				"Replication Lag:       1.5s\n",
				"Create Index:          10\nModify Index:          12\n",
			},
		},
		{
			name:     "read missing",
			args:     []string{"peering", "read", "-name", "nope"},
			replies:  map[string]reply{"GET /v1/peering/nope": {status: 404, body: `Peering not found for "nope"`}},
			want:     []wantRequest{{method: "GET", path: "/v1/peering/nope"}},
			wantErr:  "No peering with name nope found.",
			wantExit: 1,
		},
		{
			name: "read shows the acceptor's stream secret",
			args: []string{"peering", "read", "-name", "cluster-01"},
			replies: map[string]reply{"GET /v1/peering/cluster-01": {body: `{"Name":"cluster-01","State":"ACTIVE",
"StreamSecret":{"BoundTrustDomain":"abc.peerd","ActiveSince":null,"RotationPending":true}}`}},
			want: []wantRequest{{method: "GET", path: "/v1/peering/cluster-01"}},
			wantOuts: []string{
				"Secret Bound To:       abc.peerd\n",
				"Secret Active Since:   never\n",
				"Secret Rotation:       pending (waiting for the peer)\n",
			},
		},
		{
			name:    "read json",
			args:    []string{"peering", "read", "-name", "b-peer", "-format", "json"},
			replies: map[string]reply{"GET /v1/peering/b-peer": {body: `{"Name":"b-peer"}`}},
			want:    []wantRequest{{method: "GET", path: "/v1/peering/b-peer"}},
			wantOut: "{\n    \"Name\": \"b-peer\"\n}\n",
		},
		{
			name:    "delete",
			args:    []string{"peering", "delete", "-name", "cluster-02"},
			replies: map[string]reply{"DELETE /v1/peering/cluster-02": {}},
			want:    []wantRequest{{method: "DELETE", path: "/v1/peering/cluster-02"}},
			wantOut: "Successfully submitted peering connection, cluster-02, for deletion\n",
		},
		{
			name:    "rotate-secret",
			args:    []string{"peering", "rotate-secret", "-name", "cluster-01"},
			replies: map[string]reply{"POST /v1/peering/cluster-01/rotate-secret": {}},
			want:    []wantRequest{{method: "POST", path: "/v1/peering/cluster-01/rotate-secret"}},
			wantOut: "Rotating the stream secret of peering cluster-01: the peer takes the new one over the open stream\n",
		},
		{
			name:     "rotate-secret on the dialer",
			args:     []string{"peering", "rotate-secret", "-name", "cluster-02"},
			replies:  map[string]reply{"POST /v1/peering/cluster-02/rotate-secret": {status: 409, body: "stream secrets are the acceptor's"}},
			want:     []wantRequest{{method: "POST", path: "/v1/peering/cluster-02/rotate-secret"}},
			wantErr:  "stream secrets are the acceptor's",
			wantExit: 1,
		},
		{
			name:     "rotate-secret without a name",
			args:     []string{"peering", "rotate-secret"},
			wantErr:  "missing required flag -name",
			wantExit: 2,
		},
		{
			name:    "peering exported-services",
			args:    []string{"peering", "exported-services", "-name", "cluster-02"},
			replies: map[string]reply{"GET /v1/peering/cluster-02": {body: peeringJSON}},
			want:    []wantRequest{{method: "GET", path: "/v1/peering/cluster-02"}},
			wantOut: "web\n",
		},
		{
			name:    "peering exported-services json",
			args:    []string{"peering", "exported-services", "-name", "b-peer", "-format", "json"},
			replies: map[string]reply{"GET /v1/peering/b-peer": {body: `{"Name":"b-peer","StreamStatus":{}}`}},
			want:    []wantRequest{{method: "GET", path: "/v1/peering/b-peer"}},
			wantOut: "[]\n",
		},
		{
			name: "services export creates the entry",
			args: []string{"services", "export", "-name", "web", "-consumer-peers", "a,b"},
			replies: map[string]reply{
				"GET /v1/config/exported-services/default": {status: 404, body: `Config entry not found`},
				"PUT /v1/config": {body: "true"},
			},
			want: []wantRequest{
				{method: "GET", path: "/v1/config/exported-services/default"},
				{method: "PUT", path: "/v1/config", query: "cas=0",
					body: `{"Kind":"exported-services","Name":"default","Services":[{"Name":"web","Consumers":[{"Peer":"a"},{"Peer":"b"}]}]}`},
			},
			wantOut: "Successfully exported service web to cluster peers a, b\n",
		},
		{
			name: "services export merges consumers",
			args: []string{"services", "export", "-name", "web", "-consumer-peers", "b,c"},
			replies: map[string]reply{
				"GET /v1/config/exported-services/default": {body: `{"Kind":"exported-services","Name":"default","Meta":{"k":"v"},
"Services":[{"Name":"db","Consumers":[{"Peer":"a"}]},{"Name":"web","Consumers":[{"Peer":"a"},{"Peer":"b"},{"Partition":"p"}]}],"CreateIndex":4,"ModifyIndex":7}`},
				"PUT /v1/config": {body: "true"},
			},
			want: []wantRequest{
				{method: "GET", path: "/v1/config/exported-services/default"},
				{method: "PUT", path: "/v1/config", query: "cas=7",
					body: `{"Kind":"exported-services","Name":"default","Meta":{"k":"v"},"Services":[{"Name":"db","Consumers":[{"Peer":"a"}]},{"Name":"web","Consumers":[{"Peer":"a"},{"Peer":"b"},{"Partition":"p"},{"Peer":"c"}]}]}`},
			},
			wantOut: "Successfully exported service web to cluster peers b, c\n",
		},
		{
			name:     "services export without peers",
			args:     []string{"services", "export", "-name", "web"},
			wantErr:  "missing required flag -consumer-peers",
			wantExit: 2,
		},
		{
			name:    "services exported-services",
			args:    []string{"services", "exported-services"},
			replies: map[string]reply{"GET /v1/exported-services": {body: `[{"Service":"web","Partition":"default","Namespace":"default","Consumers":{"Peers":["a","b"]}},{"Service":"db","Consumers":{"Peers":["a"]}}]`}},
			want:    []wantRequest{{method: "GET", path: "/v1/exported-services"}},
			wantOut: "Service  Consumer Peers\nweb      a, b\ndb       a\n",
		},
		{
			name:    "services exported-services empty",
			args:    []string{"services", "exported-services"},
			replies: map[string]reply{"GET /v1/exported-services": {body: `[]`}},
			want:    []wantRequest{{method: "GET", path: "/v1/exported-services"}},
			wantOut: "No exported services found\n",
		},
		{
			name:    "services imported-services",
			args:    []string{"services", "imported-services"},
			replies: map[string]reply{"GET /v1/imported-services": {body: `[{"Service":"api","Partition":"default","Namespace":"default","SourcePeer":"cluster-02","SourcePartition":"default"}]`}},
			want:    []wantRequest{{method: "GET", path: "/v1/imported-services"}},
			wantOut: "Service  Source Peer\napi      cluster-02\n",
		},
		{
			name:    "services imported-services json",
			args:    []string{"services", "imported-services", "-format", "json"},
			replies: map[string]reply{"GET /v1/imported-services": {body: `[]`}},
			want:    []wantRequest{{method: "GET", path: "/v1/imported-services"}},
			wantOut: "[]\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agent := newFakeAgent(t, tt.replies)
			out, _, err := runPeerctl(t, map[string]string{EnvHTTPAddr: agent.url}, "", tt.args...)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
			if got := ExitCode(err); got != tt.wantExit {
				t.Errorf("got exit code %d, want %d", got, tt.wantExit)
			}
			if tt.wantOuts != nil {
				for _, s := range tt.wantOuts {
					if !strings.Contains(out, s) {
						t.Errorf("output lacks %q:\n%s", s, out)
					}
				}
			} else if out != tt.wantOut {
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

// TestServicesExportRetriesCAS makes the first check-and-set fail, as when
// another writer changed the entry between the read and the write: export
// reads again and writes with the new index.
func TestServicesExportRetriesCAS(t *testing.T) {
	var (
		mu     sync.Mutex
		index  = 5
		writes []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.Method + " " + r.URL.Path {
		case "GET /v1/config/exported-services/default":
			io.WriteString(w, `{"Kind":"exported-services","Name":"default","Services":[{"Name":"web","Consumers":[{"Peer":"a"}]}],"ModifyIndex":`+itoa(index)+`}`)
		case "PUT /v1/config":
			body, _ := io.ReadAll(r.Body)
			writes = append(writes, r.URL.RawQuery+" "+string(body))
			if len(writes) == 1 {
				index = 6 // someone else wrote in between
				io.WriteString(w, "false")
				return
			}
			io.WriteString(w, "true")
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	out, _, err := runPeerctl(t, map[string]string{EnvHTTPAddr: srv.URL}, "", "services", "export", "-name", "web", "-consumer-peers", "b")
	if err != nil {
		t.Fatal(err)
	}
	if out != "Successfully exported service web to cluster peers b\n" {
		t.Errorf("got %q", out)
	}
	if len(writes) != 2 || !strings.HasPrefix(writes[0], "cas=5 ") || !strings.HasPrefix(writes[1], "cas=6 ") {
		t.Fatalf("writes: got %q", writes)
	}
	var entry struct {
		Services []struct {
			Name      string
			Consumers []struct{ Peer string }
		}
	}
	if err := json.Unmarshal([]byte(strings.SplitN(writes[1], " ", 2)[1]), &entry); err != nil {
		t.Fatal(err)
	}
	if len(entry.Services) != 1 || len(entry.Services[0].Consumers) != 2 || entry.Services[0].Consumers[1].Peer != "b" {
		t.Errorf("written entry: got %+v", entry)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
