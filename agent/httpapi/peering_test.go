package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/peerd/peerd/agent/local"
	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/peering"
)

// peeringNode is a one-server cluster with its peering controller, its
// internal and TLS gRPC servers and the HTTP API, all in this process.
type peeringNode struct {
	cluster *catalog.Cluster
	peering *peering.Server
	srv     *Server
	local   *local.State
	url     string
	client  *api.Client
	// internalAddr is the internal gRPC port, where the relay is served.
	internalAddr string
}

// startPeeringNode starts a dev server in datacenter dc and waits until it
// leads and has a CA. Without withPeering the HTTP API has no controller.
func startPeeringNode(t testing.TB, name, dc string, withPeering bool) *peeringNode {
	t.Helper()
	return startPeeringNodeWith(t, name, dc, withPeering, nil)
}

// startPeeringNodeWith is startPeeringNode with adjust changing the HTTP
// API's configuration (nil: none).
func startPeeringNodeWith(t testing.TB, name, dc string, withPeering bool, adjust func(*Config)) *peeringNode {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	internalLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cc := catalog.DevConfig()
	cc.NodeName, cc.NodeID, cc.Datacenter, cc.Logger = name, uuid.NewString(), dc, quiet
	cc.GRPCAddr, cc.GRPCTLSAddr = internalLn.Addr().String(), tlsLn.Addr().String()
	c, err := catalog.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	pc := peering.DefaultConfig()
	pc.Cluster, pc.Logger = c, quiet
	pc.AllowLocalGateways = true // the clusters' gateways are on 127.0.0.1
	p, err := peering.New(pc)
	if err != nil {
		t.Fatal(err)
	}
	internal := grpc.NewServer()
	c.RegisterGRPC(internal)
	p.RegisterManagement(internal)
	secure := grpc.NewServer(grpc.Creds(credentials.NewTLS(p.ServerTLSConfig())))
	p.RegisterStream(secure)

	l, err := local.New(local.Config{Node: state.Node{Node: name, Address: "127.0.0.1", Datacenter: dc}, Logger: quiet}, c)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Cluster: c, Local: l, Logger: quiet}
	if withPeering {
		cfg.Peering = p
	}
	if adjust != nil {
		adjust(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.RegisterRelay(internal)
	go func() { _ = internal.Serve(internalLn) }()
	go func() { _ = secure.Serve(tlsLn) }()
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		secure.Stop()
		internal.Stop()
		_ = c.Close(context.Background())
	})
	client, err := api.NewClient(&api.Config{Address: strings.TrimPrefix(hs.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c.IsLeader() {
			if _, roots, _ := c.Store().CARoots(nil); len(roots) > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no leader with a CA after 10 s", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &peeringNode{cluster: c, peering: p, srv: srv, local: l, url: hs.URL, client: client, internalAddr: internalLn.Addr().String()}
}

// call sends method path with body and returns the status and body.
func call(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestPeeringConsulClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := startPeeringNode(t, "a", "dc1", true)
	b := startPeeringNode(t, "b", "dc2", true)

	gen, _, err := b.client.Peerings().GenerateToken(ctx, api.PeeringGenerateTokenRequest{PeerName: "a", Meta: map[string]string{"env": "test"}}, nil)
	if err != nil {
		t.Fatalf("generate token: %v", err)
	}
	if gen.PeeringToken == "" {
		t.Fatal("empty token")
	}
	if _, _, err := a.client.Peerings().Establish(ctx, api.PeeringEstablishRequest{PeerName: "b", PeeringToken: gen.PeeringToken}, nil); err != nil {
		t.Fatalf("establish: %v", err)
	}

	acc, _, err := b.client.Peerings().Read(ctx, "a", nil)
	if err != nil || acc == nil {
		t.Fatalf("read on the acceptor: %v, %v", acc, err)
	}
	if acc.Name != "a" || acc.ID == "" || acc.Meta["env"] != "test" || acc.Partition != "default" || acc.CreateIndex == 0 || acc.DeletedAt != nil {
		t.Errorf("acceptor peering: got %+v", acc)
	}
	dial, _, err := a.client.Peerings().Read(ctx, "b", nil)
	if err != nil || dial == nil {
		t.Fatalf("read on the dialer: %v, %v", dial, err)
	}
	if dial.PeerID != acc.ID || dial.PeerServerName == "" || len(dial.PeerServerAddresses) != 1 || len(dial.PeerCAPems) == 0 ||
		dial.Remote.Datacenter != "dc2" {
		t.Errorf("dialer peering: got %+v", dial)
	}
	if dial.State != api.PeeringStateEstablishing && dial.State != api.PeeringStateActive {
		t.Errorf("dialer state: got %s", dial.State)
	}

	missing, _, err := a.client.Peerings().Read(ctx, "nope", nil)
	if err != nil || missing != nil {
		t.Errorf("read missing: got %v, %v; want nil, nil", missing, err)
	}
	list, _, err := b.client.Peerings().List(ctx, nil)
	if err != nil || len(list) != 1 || list[0].Name != "a" {
		t.Errorf("list: got %v, %v", list, err)
	}

	// Reusing the token is refused with 403.
	_, _, err = a.client.Peerings().Establish(ctx, api.PeeringEstablishRequest{PeerName: "b2", PeeringToken: gen.PeeringToken}, nil)
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "generate a new peering token") {
		t.Errorf("reused token: got %v, want a 403 telling to generate a new token", err)
	}

	if _, err := a.client.Peerings().Delete(ctx, "b", nil); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if p, _, err := a.client.Peerings().Read(ctx, "b", nil); err != nil || (p != nil && (p.State != api.PeeringStateDeleting || p.DeletedAt == nil)) {
		t.Errorf("read after delete: got %+v, %v; want DELETING with DeletedAt, or gone", p, err)
	}

	// Exported and imported services.
	if _, _, err := b.client.ConfigEntries().Set(&api.ExportedServicesConfigEntry{
		Name:     "default",
		Services: []api.ExportedService{{Name: "web", Consumers: []api.ServiceConsumer{{Peer: "a"}, {Peer: "c"}}}},
	}, nil); err != nil {
		t.Fatalf("write exported-services: %v", err)
	}
	exported, _, err := b.client.ExportedServices(nil)
	if err != nil || len(exported) != 1 || exported[0].Service != "web" || !slices.Equal(exported[0].Consumers.Peers, []string{"a", "c"}) {
		t.Errorf("exported services: got %+v, %v", exported, err)
	}
	if _, err := b.peering.GenerateToken(ctx, peering.GenerateTokenRequest{PeerName: "c"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.cluster.Apply(ctx, &catalog.Command{Type: catalog.CmdRegister, Register: &state.RegisterRequest{
		Node:     &state.Node{Node: "c-node", Address: "10.0.0.1"},
		Service:  &state.Service{ID: "api-1", Service: "api", Port: 80},
		PeerName: "c",
	}}); err != nil {
		t.Fatalf("register imported service: %v", err)
	}
	imported, _, err := b.client.ImportedServices(nil)
	if err != nil || len(imported) != 1 || imported[0].Service != "api" || imported[0].SourcePeer != "c" {
		t.Errorf("imported services: got %+v, %v", imported, err)
	}
	c, _, err := b.client.Peerings().Read(ctx, "c", nil)
	if err != nil || c == nil || !slices.Equal(c.StreamStatus.ImportedServices, []string{"api"}) || !slices.Equal(c.StreamStatus.ExportedServices, []string{"web"}) {
		t.Errorf("peering c: got %+v, %v", c, err)
	}
}

func TestPeeringEndpointErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := startPeeringNode(t, "a", "dc1", true)
	b := startPeeringNode(t, "b", "dc2", true)
	fromB, err := b.peering.GenerateToken(ctx, peering.GenerateTokenRequest{PeerName: "a"})
	if err != nil {
		t.Fatal(err)
	}
	fromA, err := a.peering.GenerateToken(ctx, peering.GenerateTokenRequest{PeerName: "b"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	deadTok, err := b.peering.GenerateToken(ctx, peering.GenerateTokenRequest{PeerName: "dead", ServerExternalAddresses: []string{dead}})
	if err != nil {
		t.Fatal(err)
	}
	js := func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	}

	tests := []struct {
		name         string
		method, path string
		body         string
		code         int
		want         string
	}{
		{"token without body", "POST", "/v1/peering/token", "", 400, "must be provided in the body"},
		{"token without name", "POST", "/v1/peering/token", `{}`, 400, "PeerName is required"},
		{"token with a bad name", "POST", "/v1/peering/token", `{"PeerName":"Bad_Name"}`, 400, "Bad_Name is not a valid peer name"},
		{"token with a bad expiry", "POST", "/v1/peering/token", `{"PeerName":"x","ExpiresIn":"soon"}`, 400, "invalid ExpiresIn"},
		{"token with a bad address", "POST", "/v1/peering/token", `{"PeerName":"x","ServerExternalAddresses":["nope"]}`, 400, "ServerExternalAddresses[0]"},
		{"token in another partition", "POST", "/v1/peering/token", `{"PeerName":"x","Partition":"p1"}`, 400, "partition"},
		{"token with an unknown field", "POST", "/v1/peering/token", `{"PeerName":"x","Bogus":1}`, 400, "Bogus"},
		{"establish without token", "POST", "/v1/peering/establish", `{"PeerName":"x"}`, 400, "PeeringToken is required"},
		{"establish with garbage", "POST", "/v1/peering/establish", `{"PeerName":"x","PeeringToken":"garbage"}`, 400, "peering token"},
		{"establish within the cluster", "POST", "/v1/peering/establish", js(map[string]string{"PeerName": "x", "PeeringToken": fromA}), 400, "cannot create a peering within the same cluster"},
		{"establish over an acceptor", "POST", "/v1/peering/establish", js(map[string]string{"PeerName": "b", "PeeringToken": fromB}), 409, "there is an existing peering expecting to be dialed"},
		{"establish unreachable", "POST", "/v1/peering/establish", js(map[string]string{"PeerName": "dead", "PeeringToken": deadTok}), 502, dead},
		{"read missing", "GET", "/v1/peering/nope", "", 404, `Peering not found for "nope"`},
		{"read bad name", "GET", "/v1/peering/NOPE", "", 400, "not a valid peer name"},
		{"delete missing", "DELETE", "/v1/peering/nope", "", 404, `Peering not found for "nope"`},
		{"list in another partition", "GET", "/v1/peerings?partition=p1", "", 400, "partition"},
		{"wrong method", "PUT", "/v1/peering/token", "", 405, "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, tt.method, a.url+tt.path, tt.body)
			if code != tt.code || !strings.Contains(body, tt.want) {
				t.Errorf("got %d %q, want %d containing %q", code, body, tt.code, tt.want)
			}
		})
	}

	// A good establish answers {} and the peering reads back in Consul's shape.
	code, body := call(t, "POST", a.url+"/v1/peering/establish", js(map[string]string{"PeerName": "bee", "PeeringToken": fromB}))
	if code != 200 || strings.TrimSpace(body) != "{}" {
		t.Fatalf("establish: got %d %q", code, body)
	}
	code, body = call(t, "POST", a.url+"/v1/peering/establish", js(map[string]string{"PeerName": "bee2", "PeeringToken": fromB}))
	if code != 403 || !strings.Contains(body, "generate a new peering token") {
		t.Errorf("reused token: got %d %q", code, body)
	}
	code, body = call(t, "GET", a.url+"/v1/peering/bee", "")
	if code != 200 {
		t.Fatalf("read: got %d %q", code, body)
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(body), &obj); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ID", "Name", "Partition", "State", "PeerID", "PeerCAPems", "PeerServerName", "PeerServerAddresses", "StreamStatus", "Remote", "CreateIndex", "ModifyIndex", "ReplicationLagMs"} {
		if _, ok := obj[k]; !ok {
			t.Errorf("peering object lacks %s: %s", k, body)
		}
	}
	if _, ok := obj["DeletedAt"]; ok {
		t.Errorf("a live peering has DeletedAt: %s", body)
	}
	ss, _ := obj["StreamStatus"].(map[string]any)
	for _, k := range []string{"ImportedServices", "ExportedServices", "LastHeartbeat", "LastReceive", "LastSend"} {
		if _, ok := ss[k]; !ok {
			t.Errorf("StreamStatus lacks %s: %s", k, body)
		}
	}
	code, body = call(t, "DELETE", a.url+"/v1/peering/bee", "")
	if code != 200 || body != "" {
		t.Errorf("delete: got %d %q, want an empty 200", code, body)
	}
	code, body = call(t, "GET", a.url+"/v1/peerings", "")
	if code != 200 || !strings.HasPrefix(body, "[") {
		t.Errorf("list: got %d %q", code, body)
	}
	code, body = call(t, "GET", a.url+"/v1/imported-services", "")
	if code != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("imported services: got %d %q, want []", code, body)
	}
	code, body = call(t, "GET", a.url+"/v1/exported-services", "")
	if code != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("exported services: got %d %q, want []", code, body)
	}
}

func TestPeeringWithoutController(t *testing.T) {
	n := startPeeringNode(t, "n", "dc1", false)
	for _, tt := range []struct{ method, path, body string }{
		{"POST", "/v1/peering/token", `{"PeerName":"x"}`},
		{"POST", "/v1/peering/establish", `{"PeerName":"x","PeeringToken":"y"}`},
		{"GET", "/v1/peering/x", ""},
		{"DELETE", "/v1/peering/x", ""},
		{"GET", "/v1/peerings", ""},
	} {
		code, body := call(t, tt.method, n.url+tt.path, tt.body)
		if code != http.StatusNotImplemented || !strings.Contains(body, "peering") {
			t.Errorf("%s %s: got %d %q, want 501", tt.method, tt.path, code, body)
		}
	}
	if code, _ := call(t, "GET", n.url+"/v1/exported-services", ""); code != 200 {
		t.Errorf("exported services without a controller: got %d, want 200", code)
	}
}
