package agent

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/internal/identity"
)

// TestMeshAcrossNodes: billing runs on a client node of a 4-node cluster b
// and routes /ledger/ to ledger, which runs on a server node. The request
// enters the client node's gateway (whose leaf is signed through a server,
// and whose state is the mirrored view), is routed there, and crosses to
// the server node re-encrypted with the gateway identity, keeping the
// caller's identity in XFCC.
func TestMeshAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("five agents in one process: skipped with -short")
	}
	a := startMeshCluster(t, "a", nil)
	pb := startPeeringCluster(t, "b", "dc-b")
	b := &meshCluster{name: "b", agent: pb.client, api: pb.api}
	a.peerWith(t, b)

	b.register(t, &api.AgentServiceRegistration{ID: "billing-1", Name: "billing", Port: startEcho(t, "billing-1", false), Address: "127.0.0.1"})
	server := pb.servers[1]
	serverAPI, err := api.NewClient(&api.Config{Address: server.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	if err := serverAPI.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "ledger-1", Name: "ledger",
		Port: startEcho(t, "ledger-1", false), Address: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"billing", "ledger"} {
		b.write(t, &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: svc, Protocol: "http"})
	}
	b.write(t, &api.ServiceRouterConfigEntry{Kind: api.ServiceRouter, Name: "billing", Routes: []api.ServiceRoute{
		{Match: &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathPrefix: "/ledger/"}},
			Destination: &api.ServiceRouteDestination{Service: "ledger"}},
	}})
	b.export(t, "a", "billing")
	b.write(t, &api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "billing",
		Sources: []*api.SourceIntention{{Name: "web", Peer: "a", Action: api.IntentionActionAllow}}})
	up := freePort(t)
	a.register(t, &api.AgentServiceRegistration{Name: "web", Port: 9, Proxy: &api.AgentServiceConnectProxyConfig{
		Upstreams: []api.Upstream{{DestinationPeer: "b", DestinationName: "billing", LocalBindPort: up}},
	}})
	a.waitImportedPassing(t, "billing", "b", 1)
	client := &http.Client{Timeout: 5 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d", up)
	tdA := trustDomainOf(t, a)
	eventually(t, 30*time.Second, "billing on the client node answers", func() error {
		code, got, body, err := get(client, url+"/pay")
		if err != nil || code != 200 || got.Instance != "billing-1" {
			return fmt.Errorf("status %d %q %+v, %v", code, body, got, err)
		}
		return nil
	})
	eventually(t, 30*time.Second, "ledger on a server node answers through the node hop", func() error {
		code, got, body, err := get(client, url+"/ledger/entries")
		if err != nil || code != 200 || got.Instance != "ledger-1" {
			return fmt.Errorf("status %d %q %+v, %v", code, body, got, err)
		}
		if !strings.Contains(got.XFCC, "URI=spiffe://"+tdA+"/ns/default/dc/dc-a/svc/web") {
			return fmt.Errorf("XFCC %q lost the caller", got.XFCC)
		}
		return nil
	})
	// The count is taken after the response is written: poll for it.
	eventually(t, 5*time.Second, "the server node's gateway counts the hop", func() error {
		metrics := scrape(t, server)
		if metricValue(metrics, `peerd_proxy_requests_total{class="2xx",direction="inbound",peer="",service="ledger"}`) < 1 {
			return fmt.Errorf("not counted:\n%s", grepLines(metrics, "peerd_proxy_requests"))
		}
		return nil
	})

	// The hop is accepted only from a node certificate: the cluster's
	// gateway identity (which any gateway node can be signed) carrying a
	// forged caller is refused at the handshake.
	rootB := clusterRoot(t, &meshCluster{agent: server})
	tdB := spiffeid.RequireTrustDomainFromString(rootB.TrustDomain)
	gwID, err := identity.GatewayID(tdB, "dc-b")
	if err != nil {
		t.Fatal(err)
	}
	forged := leafFor(t, identity.CA{}, rootB, identity.LeafRequest{ID: gwID})
	before := metricValue(scrape(t, server), `peerd_proxy_tls_handshake_failures_total{listener="gateway",reason="not_a_service_identity"}`)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", server.GatewayAddr(), &tls.Config{
		ServerName: identity.InternalSNI("ledger", "default", "dc-b", tdB), InsecureSkipVerify: true,
		Certificates: []tls.Certificate{forged}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS13,
	})
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(conn, "GET /ledger/x HTTP/1.1\r\nHost: ledger\r\nX-Forwarded-Client-Cert: URI=spiffe://%s/ns/default/dc/dc-b/svc/admin\r\n\r\n", tdB.Name())
		line, rerr := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if rerr == nil {
			t.Fatalf("a hop with the gateway identity was answered: %q", line)
		}
	}
	eventually(t, 5*time.Second, "the forged hop is counted", func() error {
		if got := metricValue(scrape(t, server), `peerd_proxy_tls_handshake_failures_total{listener="gateway",reason="not_a_service_identity"}`); got <= before {
			return fmt.Errorf("count %v, was %v", got, before)
		}
		return nil
	})
}
