package peering

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

func TestStreamRejectsBadOpen(t *testing.T) {
	a := newTestCluster(t, "a", "dc1", nil)
	id, secret := acceptorPeering(t, a, "b")
	client := streamClient(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.ExchangeSecret(ctx, &pbpeerstream.ExchangeSecretRequest{PeerId: id, EstablishmentSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	open := func(peerID, secret string) *pbpeerstream.ReplicationMessage {
		return &pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Open{Open: &pbpeerstream.Open{PeerId: peerID, StreamSecretId: secret}}}
	}
	tests := []struct {
		name  string
		first *pbpeerstream.ReplicationMessage
		want  codes.Code
	}{
		{"heartbeat first", &pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Heartbeat{Heartbeat: &pbpeerstream.Heartbeat{}}}, codes.InvalidArgument},
		{"open without secret", open(id, ""), codes.InvalidArgument},
		{"wrong secret", open(id, uuid.NewString()), codes.PermissionDenied},
		{"establishment secret instead of stream secret", open(id, secret), codes.PermissionDenied},
		{"unknown peering", open(uuid.NewString(), resp.GetStreamSecret()), codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := client.StreamResources(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(tt.first); err != nil {
				t.Fatal(err)
			}
			_, err = stream.Recv()
			if got := statusCode(err); got != tt.want {
				t.Fatalf("got %v (%v), want %v", got, err, tt.want)
			}
		})
	}
	if _, p, _ := a.cluster.Store().PeeringByID(nil, id); p.State != state.PeeringPending {
		t.Fatalf("state after refused opens: got %s, want PENDING", p.State)
	}
}

func TestReplicationBothWays(t *testing.T) {
	a, b := twoClusters(t, nil, nil)
	register(t, a, "a-node1", "10.1.0.1", "web", "web-1", 8080, state.HealthPassing)
	register(t, a, "a-node2", "10.1.0.2", "web", "web-2", 8080, state.HealthPassing)
	register(t, b, "b-node1", "10.2.0.1", "api", "api-1", 9090, state.HealthPassing)
	export(t, a, map[string][]string{"web": {"b"}})
	export(t, b, map[string][]string{"api": {"a"}})
	p := establish(t, a, b)
	waitActive(t, p)

	waitFor(t, 10*time.Second, "web imported at b", func() bool { return len(imported(t, b, "a", "web")) == 2 })
	waitFor(t, 10*time.Second, "api imported at a", func() bool { return len(imported(t, a, "b", "api")) == 1 })

	// The imported instance carries what the exporter computed.
	csn := imported(t, b, "a", "web")["a-node1/web-1"]
	tdA, _ := a.peering.trustDomain()
	if got, want := csn.Service.Meta[MetaPeerSNI], identity.PeeredSNI("web", "default", "default", "b", tdA); got != want {
		t.Errorf("SNI: got %q, want %q", got, want)
	}
	if got := csn.Service.Meta[MetaPeerSPIFFEIDs]; !strings.Contains(got, "spiffe://"+tdA.Name()+"/ns/default/dc/dc1/svc/web") {
		t.Errorf("SPIFFE IDs: got %q, want the service's ID", got)
	}
	if got := csn.Service.Meta[MetaPeerProtocol]; got != "tcp" {
		t.Errorf("protocol: got %q, want tcp", got)
	}
	if got := csn.Service.TaggedAddresses[TaggedAddressGateway]; got.Address != "10.1.0.1" || got.Port != 8443 {
		t.Errorf("gateway: got %+v, want 10.1.0.1:8443", got)
	}
	if csn.Service.Port != 8080 || csn.Service.Meta["team"] != "x" || !slices.Equal(csn.Service.Tags, []string{"v1"}) || csn.Node.Address != "10.1.0.1" {
		t.Errorf("instance: got %+v on %+v", csn.Service, csn.Node)
	}
	if len(csn.Checks) != 1 || csn.Checks[0].Status != state.HealthPassing {
		t.Errorf("checks: got %d, want one passing flattened check", len(csn.Checks))
	}
	// Trust bundles and server addresses.
	waitFor(t, 5*time.Second, "trust bundle of a at b", func() bool {
		_, tb, _ := b.cluster.Store().TrustBundle(nil, "a")
		return tb != nil && tb.TrustDomain == tdA.Name()
	})
	waitFor(t, 5*time.Second, "trust bundle of b at a", func() bool {
		_, tb, _ := a.cluster.Store().TrustBundle(nil, "b")
		return tb != nil
	})
	waitFor(t, 5*time.Second, "the dialer's server addresses", func() bool {
		_, row, _ := b.cluster.Store().Peering(nil, "a")
		return slices.Equal(row.PeerServerAddresses, []string{a.tlsAddr})
	})
	if got := a.peering.tracker.get(p.accID).ExportedServices; !slices.Equal(got, []string{"web"}) {
		t.Errorf("a exports: got %v, want [web]", got)
	}
	if got := b.peering.tracker.get(p.dialID).ImportedServices; !slices.Equal(got, []string{"web"}) {
		t.Errorf("b imports: got %v, want [web]", got)
	}

	// A health change at the exporter shows at the importer quickly.
	start := time.Now()
	setHealth(t, a, "a-node2", "web-2", state.HealthCritical)
	waitFor(t, 5*time.Second, "critical at b", func() bool { return importedHealth(t, b, "a", "web", "a-node2/web-2") == state.HealthCritical })
	t.Logf("health change visible at the importer after %s", time.Since(start))
	if got := importedHealth(t, b, "a", "web", "a-node1/web-1"); got != state.HealthPassing {
		t.Errorf("untouched instance: got %s, want passing", got)
	}

	// A removed instance goes, and its node with it.
	deregister(t, a, "a-node2", "web-2")
	waitFor(t, 5*time.Second, "web-2 removed at b", func() bool { return len(imported(t, b, "a", "web")) == 1 })
	if _, n, _ := b.cluster.Store().Node(nil, "a", "a-node2"); n != nil {
		t.Errorf("node a-node2 still imported after its last service went")
	}

	// A service dropped from the export list is removed.
	export(t, a, map[string][]string{})
	waitFor(t, 5*time.Second, "web removed at b", func() bool { return len(imported(t, b, "a", "web")) == 0 })
	if n, _ := b.cluster.Store().ImportedNodes("a", 0); len(n) != 0 {
		t.Errorf("imported nodes left: %v", n)
	}
	if got := len(imported(t, a, "b", "api")); got != 1 {
		t.Errorf("api at a: got %d instances, want 1", got)
	}
}

func TestProtocolFromServiceDefaults(t *testing.T) {
	a, b := twoClusters(t, nil, nil)
	register(t, a, "n1", "10.1.0.1", "web", "web-1", 80, state.HealthPassing)
	apply(t, a, &catalog.Command{Type: catalog.CmdConfigSet, ConfigEntry: &catalog.ConfigEntryRequest{
		Kind: configentry.ServiceDefaults, Name: "web", Entry: json.RawMessage(`{"Kind":"service-defaults","Name":"web","Protocol":"http"}`),
	}})
	export(t, a, map[string][]string{"web": {"b"}})
	establish(t, a, b)
	waitFor(t, 10*time.Second, "web imported with protocol http", func() bool {
		csn, ok := imported(t, b, "a", "web")["n1/web-1"]
		return ok && csn.Service.Meta[MetaPeerProtocol] == "http"
	})
}

// sentBytes is the exporter's peerd_peering_message_bytes_total{direction=sent}.
func sentBytes(t testing.TB, c *testCluster, peer string) float64 {
	t.Helper()
	return counterValue(t, c.peering.metrics.bytes.WithLabelValues(peer, "sent"))
}

func TestDeltaSendsFewerBytes(t *testing.T) {
	// Slow heartbeats, so the byte count measures the change alone.
	slow := func(c *Config) { c.HeartbeatInterval, c.HeartbeatTimeout = time.Hour, 2*time.Hour }
	a, b := twoClusters(t, slow, slow)
	const n = 50
	for i := range n {
		register(t, a, fmt.Sprintf("node-%02d", i), fmt.Sprintf("10.1.0.%d", i+1), "web", fmt.Sprintf("web-%02d", i), 8080, state.HealthPassing)
	}
	export(t, a, map[string][]string{"web": {"b"}})
	establish(t, a, b)
	waitFor(t, 10*time.Second, "web imported", func() bool { return len(imported(t, b, "a", "web")) == n })
	time.Sleep(200 * time.Millisecond) // let the sync's ACKs settle

	before := sentBytes(t, a, "b")
	setHealth(t, a, "node-07", "web-07", state.HealthWarning)
	waitFor(t, 5*time.Second, "warning at b", func() bool { return importedHealth(t, b, "a", "web", "node-07/web-07") == state.HealthWarning })
	time.Sleep(100 * time.Millisecond)
	delta := sentBytes(t, a, "b") - before

	e := &exporter{sess: &session{srv: a.peering, name: "b"}}
	snap, err := e.buildService(nil, "web")
	if err != nil {
		t.Fatal(err)
	}
	full := float64(len(mustMarshal(t, &pbpeerstream.ExportedService{Name: "web", Instances: snap.instances, Full: true})))
	t.Logf("single-instance change: delta %v bytes on the wire, full snapshot %v bytes (%.1fx)", delta, full, full/delta)
	if delta <= 0 || delta*10 > full {
		t.Fatalf("delta sent %v bytes, want at least 10x fewer than the full resource's %v", delta, full)
	}
}

func TestChunkedResource(t *testing.T) {
	small := func(c *Config) { c.MaxMessageBytes = 1024 }
	a, b := twoClusters(t, small, small)
	const n = 40
	for i := range n {
		register(t, a, fmt.Sprintf("node-%02d", i), fmt.Sprintf("10.1.0.%d", i+1), "web", fmt.Sprintf("web-%02d", i), 8080, state.HealthPassing)
	}
	export(t, a, map[string][]string{"web": {"b"}})
	establish(t, a, b)
	waitFor(t, 10*time.Second, "all instances imported from chunks", func() bool { return len(imported(t, b, "a", "web")) == n })
	setHealth(t, a, "node-39", "web-39", state.HealthCritical)
	waitFor(t, 5*time.Second, "critical at b", func() bool { return importedHealth(t, b, "a", "web", "node-39/web-39") == state.HealthCritical })
	if got := counterValue(t, b.peering.metrics.nacks.WithLabelValues("a", "sent")); got != 0 {
		t.Fatalf("importer NACKed %v responses, want 0", got)
	}
}

func TestReconnectResyncsWithoutStaleImports(t *testing.T) {
	a, b := twoClusters(t, nil, nil)
	register(t, a, "n1", "10.1.0.1", "web", "web-1", 80, state.HealthPassing)
	register(t, a, "n2", "10.1.0.2", "db", "db-1", 5432, state.HealthPassing)
	export(t, a, map[string][]string{"web": {"b"}, "db": {"b"}})
	p := establish(t, a, b)
	waitActive(t, p)
	waitFor(t, 10*time.Second, "imports", func() bool {
		return len(imported(t, b, "a", "web")) == 1 && len(imported(t, b, "a", "db")) == 1
	})

	// Let the replicated writes to the dialer's row (server addresses, the
	// peer's trust domain) land first, or they would race the test's.
	waitSettled(t, p)
	// Cut the connection: point the dialer at a dead address.
	setAddrs := func(addrs []string) {
		_, row, _ := b.cluster.Store().Peering(nil, "a")
		cp := *row
		cp.ManualServerAddresses, cp.PeerServerAddresses = addrs, addrs
		apply(t, b, &catalog.Command{Type: catalog.CmdPeeringWrite, Peering: &state.PeeringWriteRequest{Peering: &cp}})
	}
	setAddrs([]string{"127.0.0.1:1"})
	waitFor(t, 10*time.Second, "FAILING on both sides", func() bool {
		return userState(b, "a") == state.PeeringFailing && userState(a, "b") == state.PeeringFailing
	})

	// Meanwhile the exporter drops db and changes web.
	deregister(t, a, "n2", "db-1")
	setHealth(t, a, "n1", "web-1", state.HealthWarning)

	setAddrs([]string{a.tlsAddr})
	waitActive(t, p)
	waitFor(t, 10*time.Second, "resync", func() bool {
		return len(imported(t, b, "a", "db")) == 0 && importedHealth(t, b, "a", "web", "n1/web-1") == state.HealthWarning
	})
	if n, _ := b.cluster.Store().ImportedNodes("a", 0); !slices.Equal(n, []string{"n1"}) {
		t.Fatalf("imported nodes after resync: got %v, want [n1]", n)
	}
	if got := b.peering.tracker.get(p.dialID).Reconnects; got < 1 {
		t.Fatalf("reconnects: got %d, want at least 1", got)
	}
	if got := counterValue(t, b.peering.metrics.reconnects.WithLabelValues("a")); got < 1 {
		t.Fatalf("reconnect metric: got %v, want at least 1", got)
	}
}

func TestDeleteTerminatesThePeer(t *testing.T) {
	tests := []struct {
		name        string
		deleteOnAcc bool
	}{
		{"acceptor deletes", true},
		{"dialer deletes", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			oneByOne := func(c *Config) { c.PurgeBatch = 1 }
			a, b := twoClusters(t, oneByOne, oneByOne)
			for i := range 3 {
				register(t, a, fmt.Sprintf("n%d", i), "10.1.0.1", "web", "web-1", 80, state.HealthPassing)
				register(t, b, fmt.Sprintf("m%d", i), "10.2.0.1", "api", "api-1", 80, state.HealthPassing)
			}
			export(t, a, map[string][]string{"web": {"b"}})
			export(t, b, map[string][]string{"api": {"a"}})
			p := establish(t, a, b)
			waitFor(t, 10*time.Second, "imports both ways", func() bool {
				return len(imported(t, b, "a", "web")) == 3 && len(imported(t, a, "b", "api")) == 3
			})
			waitSettled(t, p)
			del, delName, other, otherName := p.acc, p.accName, p.dial, p.dialName
			if !tt.deleteOnAcc {
				del, delName, other, otherName = p.dial, p.dialName, p.acc, p.accName
			}
			_, row, _ := del.cluster.Store().Peering(nil, delName)
			cp := *row
			cp.State, cp.DeletedAt = state.PeeringDeleting, time.Now().UnixNano()
			apply(t, del, &catalog.Command{Type: catalog.CmdPeeringWrite, Peering: &state.PeeringWriteRequest{Peering: &cp}})

			waitFor(t, 10*time.Second, "the deleted row to go", func() bool {
				_, row, _ := del.cluster.Store().Peering(nil, delName)
				return row == nil
			})
			if n, _ := del.cluster.Store().ImportedNodes(delName, 0); len(n) != 0 {
				t.Fatalf("imports left at the deleting side: %v", n)
			}
			waitFor(t, 10*time.Second, "the peer TERMINATED and purged", func() bool {
				n, _ := other.cluster.Store().ImportedNodes(otherName, 0)
				return userState(other, otherName) == state.PeeringTerminated && len(n) == 0
			})
			// The terminated side stops dialing and keeps its row.
			time.Sleep(300 * time.Millisecond)
			if other.peering.streams.get(row.ID) != nil || userState(other, otherName) != state.PeeringTerminated {
				t.Fatalf("terminated side: stream open or state %s", userState(other, otherName))
			}
			// exported-services still names the peer, but nothing is
			// exported to a TERMINATED peering.
			info, err := other.peering.Read(testContext(t), otherName)
			if err != nil || info == nil || len(info.StreamStatus.ExportedServices) != 0 {
				t.Fatalf("terminated side: got %+v, %v; want no exported services", info, err)
			}
		})
	}
}

func TestHeartbeatTimeout(t *testing.T) {
	// The dialer (b) never sends heartbeats; the acceptor (a) expects one
	// every 600 ms.
	a, b := twoClusters(t,
		func(c *Config) { c.HeartbeatInterval, c.HeartbeatTimeout = 100*time.Millisecond, 600*time.Millisecond },
		func(c *Config) {
			c.HeartbeatInterval, c.HeartbeatTimeout = time.Hour, 2*time.Hour
			c.ReconnectMin, c.ReconnectMax = 2*time.Second, 2*time.Second
		})
	p := establish(t, a, b)
	waitActive(t, p)
	waitFor(t, 10*time.Second, "the acceptor to time the stream out", func() bool {
		return strings.Contains(a.peering.tracker.get(p.accID).LastError, "stale stream")
	})
	waitFor(t, 3*time.Second, "FAILING at the acceptor", func() bool { return userState(a, p.accName) == state.PeeringFailing })
}

func TestFollowerAnswersWithLeaderAddress(t *testing.T) {
	a := newTestCluster(t, "a", "dc1", nil)
	f, _ := newFollower(t, a)
	id, secret := acceptorPeering(t, a, "b")
	client := streamClient(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.ExchangeSecret(ctx, &pbpeerstream.ExchangeSecretRequest{PeerId: id, EstablishmentSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	fs := &streamServer{s: f}
	err = fs.StreamResources(&fakeServerStream{ctx: ctx, in: []*pbpeerstream.ReplicationMessage{{Payload: &pbpeerstream.ReplicationMessage_Open{Open: &pbpeerstream.Open{
		PeerId: id, StreamSecretId: resp.GetStreamSecret(),
	}}}}})
	if got := statusCode(err); got != codes.FailedPrecondition {
		t.Fatalf("got %v (%v), want FailedPrecondition", got, err)
	}
	if got := leaderAddress(err); got != a.tlsAddr {
		t.Fatalf("leader address: got %q, want %q", got, a.tlsAddr)
	}
}

// newFollower starts a second server in leader's cluster, serving the
// stream on its own TLS listener, and waits until it follows leader and
// knows its address. It returns the follower's controller and TLS address.
func newFollower(t *testing.T, leader *testCluster) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cc := catalog.DevConfig()
	cc.NodeName, cc.NodeID, cc.Datacenter = "follower", uuid.NewString(), leader.cluster.Config().Datacenter
	cc.BootstrapExpect = 0
	cc.GRPCTLSAddr = ln.Addr().String()
	cc.RetryJoin = []string{leader.cluster.GossipAddr()}
	c, err := catalog.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	pc := DefaultConfig()
	pc.Cluster = c
	s, err := New(pc)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(s.StreamServerOptions()...)
	s.RegisterStream(g)
	go func() { _ = g.Serve(ln) }()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Stop()
		_ = c.Close(context.Background())
	})
	waitFor(t, 15*time.Second, "the follower to know the leader and hold the CA", func() bool {
		m, ok := c.LeaderMember()
		_, _, caErr := s.activeRoot()
		return ok && m.Meta.GRPCTLSAddr == leader.tlsAddr && !c.IsLeader() && caErr == nil
	})
	return s, ln.Addr().String()
}

func TestDialerFollowsRedirectToLeader(t *testing.T) {
	a, b := twoClusters(t, nil, nil)
	_, followerAddr := newFollower(t, a)
	register(t, a, "n1", "10.1.0.1", "web", "web-1", 80, state.HealthPassing)
	export(t, a, map[string][]string{"web": {"b"}})
	p := establish(t, a, b)
	waitSettled(t, p)
	// Re-point the dialer at the follower only. The controller writes the
	// same row (stream status, replicated addresses) from a copy it read
	// earlier, which can undo the test's write: write again until the row
	// holds it.
	repoint := func() {
		_, row, _ := b.cluster.Store().Peering(nil, "a")
		if slices.Equal(row.ManualServerAddresses, []string{followerAddr}) {
			return
		}
		cp := *row
		cp.ManualServerAddresses = []string{followerAddr}
		apply(t, b, &catalog.Command{Type: catalog.CmdPeeringWrite, Peering: &state.PeeringWriteRequest{Peering: &cp}})
	}
	repoint()
	waitFor(t, 10*time.Second, "the follower to redirect the dialer", func() bool {
		repoint()
		return strings.Contains(b.peering.tracker.get(p.dialID).LastError, "not a leader")
	})
	redirected := time.Now()
	waitFor(t, 10*time.Second, "a stream through the redirect", func() bool {
		st := b.peering.tracker.get(p.dialID)
		return st.Connected && st.LastHeartbeat.After(redirected)
	})
	waitActive(t, p)
	waitFor(t, 10*time.Second, "web imported through the leader", func() bool { return len(imported(t, b, "a", "web")) == 1 })
}

// fakeServerStream feeds StreamResources a fixed script.
type fakeServerStream struct {
	grpc.ServerStream
	ctx  context.Context
	in   []*pbpeerstream.ReplicationMessage
	sent []*pbpeerstream.ReplicationMessage
}

func (f *fakeServerStream) Context() context.Context { return f.ctx }

func (f *fakeServerStream) Send(m *pbpeerstream.ReplicationMessage) error {
	f.sent = append(f.sent, m)
	return nil
}

func (f *fakeServerStream) Recv() (*pbpeerstream.ReplicationMessage, error) {
	if len(f.in) == 0 {
		<-f.ctx.Done()
		return nil, f.ctx.Err()
	}
	m := f.in[0]
	f.in = f.in[1:]
	return m, nil
}

// TestQueuedUpsertsCommitTogether hands the receive loop a queue of service
// upserts: they are committed in fewer raft writes than messages, a bad one
// in the middle is NACKed alone, a second message for a service already in
// the batch plans against the first's effect, and every imported node
// carries the peer's datacenter.
func TestQueuedUpsertsCommitTogether(t *testing.T) {
	a := newTestCluster(t, "a", "dc1", nil)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	p := &state.Peering{ID: uuid.NewString(), Name: "p", Remote: state.PeeringRemote{Datacenter: "dc9"}}
	ss := a.peering.newSession(ctx, cancel, nil, p, false)
	ss.imp.subscribed(pbpeerstream.TypeURLExportedService, nil)

	const n, bad = 10, 5
	inst := func(svc string, i int) *pbpeerstream.ServiceInstance {
		return &pbpeerstream.ServiceInstance{NodeName: fmt.Sprintf("n-%s-%d", svc, i), NodeAddress: "10.0.0.1", ServiceId: fmt.Sprintf("%s-%d", svc, i),
			Service: svc, Port: 80, HealthStatus: pbpeerstream.HealthStatus_HEALTH_STATUS_PASSING}
	}
	resp := func(nonce, svc string, version uint64, payload []byte) *pbpeerstream.ReplicationMessage {
		return &pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Response{Response: &pbpeerstream.Response{
			Nonce: nonce, ResourceUrl: pbpeerstream.TypeURLExportedService, ResourceId: svc, Version: version,
			Operation: pbpeerstream.Operation_OPERATION_UPSERT, FullSync: true, Resource: payload,
		}}}
	}
	in := make(chan received, n+1)
	for i := range n {
		svc := fmt.Sprintf("svc-%d", i)
		payload := mustMarshal(t, &pbpeerstream.ExportedService{Name: svc, Full: true, Instances: []*pbpeerstream.ServiceInstance{inst(svc, 0), inst(svc, 1)}})
		if i == bad {
			payload = []byte{0xff, 0xff, 0xff}
		}
		in <- received{m: resp(fmt.Sprintf("nonce-%d", i), svc, 1, payload)}
	}
	// A delta of svc-0, already in the batch: committed after it.
	in <- received{m: resp("nonce-delta", "svc-0", 2, mustMarshal(t, &pbpeerstream.ExportedService{Name: "svc-0", RemovedInstanceIds: []string{"n-svc-0-0/svc-0-0"}}))}
	close(in)
	ss.dispatch(in)
	if err := context.Cause(ctx); err != nil {
		t.Fatalf("session failed: %v", err)
	}

	// Two commits: the ten services (registrations only), then the delta
	// (one deregistration batch).
	if ss.imp.writes != 2 {
		t.Fatalf("%d raft writes for %d messages, want 2", ss.imp.writes, n+1)
	}
	var acks, nacks []string
	for {
		e, ok := ss.out.pop()
		if !ok {
			break
		}
		r := e.msg.GetRequest()
		if r.GetError() != nil {
			nacks = append(nacks, r.GetResponseNonce())
		} else {
			acks = append(acks, r.GetResponseNonce())
		}
	}
	wantAcks := []string{}
	for i := range n {
		if i != bad {
			wantAcks = append(wantAcks, fmt.Sprintf("nonce-%d", i))
		}
	}
	wantAcks = append(wantAcks, "nonce-delta")
	if !slices.Equal(acks, wantAcks) || !slices.Equal(nacks, []string{fmt.Sprintf("nonce-%d", bad)}) {
		t.Fatalf("ACKed %v, NACKed %v; want ACKs %v and a NACK of nonce-%d only", acks, nacks, wantAcks, bad)
	}

	st := a.cluster.Store()
	for i := range n {
		svc := fmt.Sprintf("svc-%d", i)
		_, csns, err := st.CheckServiceNodes(nil, "p", svc)
		if err != nil {
			t.Fatal(err)
		}
		want := 2
		switch i {
		case bad:
			want = 0
		case 0:
			want = 1 // the delta removed one
		}
		if len(csns) != want {
			t.Fatalf("%s: %d instances imported, want %d", svc, len(csns), want)
		}
		for _, csn := range csns {
			if csn.Node.Datacenter != "dc9" {
				t.Fatalf("%s: imported node %s in datacenter %q, want the peer's dc9", svc, csn.Node.Node, csn.Node.Datacenter)
			}
		}
	}
	if _, ns, err := st.NodeServices(nil, "p", "n-svc-0-0"); err != nil || len(ns) != 0 {
		t.Fatalf("node of the removed instance: services %v (%v), want the node gone", ns, err)
	}
	if got := ss.imp.syncs[pbpeerstream.TypeURLExportedService]; len(got) != n {
		t.Fatalf("full sync set holds %d services, want %d (a refused upsert keeps its place)", len(got), n)
	}
}
