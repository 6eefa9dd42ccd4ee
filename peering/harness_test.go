package peering

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/internal/testutil"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

// testCluster is a one-server cluster in this process: catalog member, the
// internal gRPC server (management, forwarding) and the TLS gRPC server (the
// peering stream), each on a free loopback port.
type testCluster struct {
	name     string
	cluster  *catalog.Cluster
	peering  *Server
	grpcAddr string
	tlsAddr  string
}

// newTestCluster starts a dev-mode single server named name in datacenter
// dc and waits until it leads and has a CA. mod may adjust the peering
// config (heartbeats, clock) before the controller starts.
func newTestCluster(t *testing.T, name, dc string, mod func(*Config)) *testCluster {
	t.Helper()
	internalLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cc := catalog.DevConfig()
	cc.NodeName, cc.NodeID, cc.Datacenter = name, uuid.NewString(), dc
	cc.GRPCAddr, cc.GRPCTLSAddr = internalLn.Addr().String(), tlsLn.Addr().String()
	c, err := catalog.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	pc := DefaultConfig()
	pc.Cluster = c
	pc.HeartbeatInterval, pc.HeartbeatTimeout = 200*time.Millisecond, 2*time.Second
	pc.ReconnectMin, pc.ReconnectMax = 50*time.Millisecond, 500*time.Millisecond
	// Both clusters run on 127.0.0.1: their gateways are loopback addresses.
	pc.AllowLocalGateways = true
	if mod != nil {
		mod(&pc)
	}
	p, err := New(pc)
	if err != nil {
		t.Fatal(err)
	}
	internal := grpc.NewServer()
	c.RegisterGRPC(internal)
	p.RegisterManagement(internal)
	secure := grpc.NewServer(p.StreamServerOptions()...)
	p.RegisterStream(secure)
	go func() { _ = internal.Serve(internalLn) }()
	go func() { _ = secure.Serve(tlsLn) }()
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		secure.Stop()
		internal.Stop()
		_ = c.Close(context.Background())
	})
	tc := &testCluster{name: name, cluster: c, peering: p, grpcAddr: cc.GRPCAddr, tlsAddr: cc.GRPCTLSAddr}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c.IsLeader() {
			if _, _, err := p.activeRoot(); err == nil {
				if _, err := p.getCertificate(&tls.ClientHelloInfo{}); err == nil {
					return tc
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster %s: no leader with a CA after 10 s", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func apply(t testing.TB, c *testCluster, cmd *catalog.Command) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.cluster.Apply(ctx, cmd); err != nil {
		t.Fatalf("%s: apply %s: %v", c.name, cmd.Type, err)
	}
}

// waitFor is testutil.WaitFor under the name this package's tests use.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, d, what, cond)
}

// streamClient is a PeerStreamService client that trusts c's CA.
func streamClient(t testing.TB, c *testCluster) pbpeerstream.PeerStreamServiceClient {
	t.Helper()
	cfg, err := dialTLSConfig(caPEMs(t, c), serverName(t, c))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(c.tlsAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pbpeerstream.NewPeerStreamServiceClient(conn)
}

func caPEMs(t testing.TB, c *testCluster) []string {
	t.Helper()
	_, pems, err := c.peering.activeRoot()
	if err != nil {
		t.Fatal(err)
	}
	return pems
}

func serverName(t testing.TB, c *testCluster) string {
	t.Helper()
	td, err := c.peering.trustDomain()
	if err != nil {
		t.Fatal(err)
	}
	return identity.ServerName(c.cluster.Config().Datacenter, td)
}

// acceptorPeering writes a PENDING peering named name on c with a fresh
// establishment secret, as GenerateToken does; it returns the peering ID
// and the secret.
func acceptorPeering(t testing.TB, c *testCluster, name string) (id, secret string) {
	t.Helper()
	id, secret = uuid.NewString(), uuid.NewString()
	apply(t, c, &catalog.Command{Type: catalog.CmdPeeringWrite, Peering: &state.PeeringWriteRequest{
		Peering: &state.Peering{ID: id, Name: name, State: state.PeeringPending},
		Secrets: &state.PeeringSecrets{EstablishmentSecret: secret},
	}})
	return id, secret
}

// peered is an established peering between an acceptor and a dialer.
type peered struct {
	acc, dial         *testCluster
	accName, dialName string // the acceptor's name for the dialer, and back
	accID, dialID     string
}

// establish peers acc and dial as Establish would, but directly: the
// acceptor's row, ExchangeSecret over TLS, the dialer's row.
func establish(t testing.TB, acc, dial *testCluster) *peered {
	t.Helper()
	p := &peered{acc: acc, dial: dial, accName: dial.name, dialName: acc.name}
	var secret string
	p.accID, secret = acceptorPeering(t, acc, p.accName)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := streamClient(t, acc).ExchangeSecret(ctx, &pbpeerstream.ExchangeSecretRequest{PeerId: p.accID, EstablishmentSecret: secret})
	if err != nil {
		t.Fatalf("exchange secret: %v", err)
	}
	p.dialID = uuid.NewString()
	apply(t, dial, &catalog.Command{Type: catalog.CmdPeeringWrite, Peering: &state.PeeringWriteRequest{
		Peering: &state.Peering{
			ID: p.dialID, Name: p.dialName, State: state.PeeringEstablishing, ShouldDial: true, PeerID: p.accID,
			PeerServerAddresses: []string{acc.tlsAddr}, PeerCAPems: caPEMs(t, acc), PeerServerName: serverName(t, acc),
			Remote: state.PeeringRemote{Datacenter: acc.cluster.Config().Datacenter},
		},
		Secrets: &state.PeeringSecrets{DialerStreamSecret: resp.GetStreamSecret()},
	}})
	return p
}

// userState is the peering's state as users see it (stored + live stream).
func userState(c *testCluster, name string) string {
	_, p, err := c.cluster.Store().Peering(nil, name)
	if err != nil || p == nil {
		return "<none>"
	}
	return c.peering.tracker.get(p.ID).State(p.State, time.Now(), c.peering.cfg.HeartbeatTimeout)
}

// waitSettled waits until the stream's own writes to both peering rows
// (activation, the peer's trust domain, server addresses) have landed: a
// test that rewrites a row before then races them (PeeringWrite has no
// check-and-set).
func waitSettled(t testing.TB, p *peered) {
	t.Helper()
	waitFor(t, 10*time.Second, "both peering rows to settle", func() bool {
		_, d, _ := p.dial.cluster.Store().Peering(nil, p.dialName)
		_, a, _ := p.acc.cluster.Store().Peering(nil, p.accName)
		return d != nil && a != nil && d.State == state.PeeringActive && a.State == state.PeeringActive &&
			d.PeerTrustDomain != "" && a.PeerTrustDomain != "" && slices.Contains(d.PeerServerAddresses, p.acc.tlsAddr)
	})
}

func waitActive(t testing.TB, p *peered) {
	t.Helper()
	waitFor(t, 10*time.Second, "both sides ACTIVE", func() bool {
		return userState(p.acc, p.accName) == state.PeeringActive && userState(p.dial, p.dialName) == state.PeeringActive
	})
}

// register registers a service instance with one service check.
func register(t testing.TB, c *testCluster, node, addr, svc, id string, port int, health string) {
	t.Helper()
	apply(t, c, &catalog.Command{Type: catalog.CmdRegister, Register: &state.RegisterRequest{
		Node:    &state.Node{ID: uuid.NewString(), Node: node, Address: addr, Meta: map[string]string{GatewayPortMeta: "8443"}},
		Service: &state.Service{ID: id, Service: svc, Port: port, Tags: []string{"v1"}, Meta: map[string]string{"team": "x"}, Weights: state.Weights{Passing: 1, Warning: 1}},
		Checks:  []*state.HealthCheck{{CheckID: id + "-check", Name: "check", Status: health, Output: "output of " + health, ServiceID: id}},
	}})
}

func setHealth(t testing.TB, c *testCluster, node, id, health string) {
	t.Helper()
	apply(t, c, &catalog.Command{Type: catalog.CmdCheckStatus, CheckStatus: &catalog.CheckStatusRequest{
		Node: node, CheckID: id + "-check", Status: health, Output: "output of " + health,
	}})
}

func deregister(t testing.TB, c *testCluster, node, id string) {
	t.Helper()
	apply(t, c, &catalog.Command{Type: catalog.CmdDeregister, Deregister: &state.DeregisterRequest{Node: node, ServiceID: id}})
}

// export writes the exported-services entry: service name -> peers.
func export(t testing.TB, c *testCluster, services map[string][]string) {
	t.Helper()
	e := configentry.ExportedServicesConfigEntry{Kind: configentry.ExportedServices, Name: configentry.DefaultPartition}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range services {
			if !yield(n) {
				return
			}
		}
	}) {
		es := configentry.ExportedService{Name: name}
		for _, p := range services[name] {
			es.Consumers = append(es.Consumers, configentry.ServiceConsumer{Peer: p})
		}
		e.Services = append(e.Services, es)
	}
	raw, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, c, &catalog.Command{Type: catalog.CmdConfigSet, ConfigEntry: &catalog.ConfigEntryRequest{
		Kind: configentry.ExportedServices, Name: configentry.DefaultPartition, Entry: raw,
	}})
}

// imported returns the instances of svc imported from peer, by instance ID.
func imported(t testing.TB, c *testCluster, peer, svc string) map[string]state.CheckServiceNode {
	t.Helper()
	_, csns, err := c.cluster.Store().CheckServiceNodes(nil, peer, svc)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]state.CheckServiceNode{}
	for _, csn := range csns {
		out[csn.Node.Node+"/"+csn.Service.ID] = csn
	}
	return out
}

func importedHealth(t testing.TB, c *testCluster, peer, svc, instance string) string {
	csn, ok := imported(t, c, peer, svc)[instance]
	if !ok {
		return "<absent>"
	}
	return state.AggregatedStatus(csn.Checks)
}

func twoClusters(t *testing.T, modA, modB func(*Config)) (*testCluster, *testCluster) {
	t.Helper()
	return newTestCluster(t, "a", "dc1", modA), newTestCluster(t, "b", "dc2", modB)
}

func statusCode(err error) codes.Code { return status.Code(err) }

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// storedPeering returns the row named name in tc's store.
func storedPeering(t *testing.T, tc *testCluster, name string) *state.Peering {
	t.Helper()
	_, p, err := tc.cluster.Store().Peering(nil, name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func storedSecrets(t *testing.T, tc *testCluster, id string) *state.PeeringSecrets {
	t.Helper()
	sec, err := tc.cluster.Store().PeeringSecrets(id)
	if err != nil {
		t.Fatal(err)
	}
	if sec == nil {
		return &state.PeeringSecrets{}
	}
	return sec
}

// establishedPair returns clusters a (dc1) and b (dc2), where b generated a token for
// "a" and a established it as "b".
func establishedPair(t *testing.T) (a, b *testCluster) {
	t.Helper()
	ctx := testContext(t)
	a = newTestCluster(t, "a", "dc1", nil)
	b = newTestCluster(t, "b", "dc2", nil)
	tok, err := b.peering.GenerateToken(ctx, GenerateTokenRequest{PeerName: "a"})
	if err != nil {
		t.Fatalf("generate token: %v", err)
	}
	if err := a.peering.Establish(ctx, EstablishRequest{PeerName: "b", PeeringToken: tok}); err != nil {
		t.Fatalf("establish: %v", err)
	}
	return a, b
}
