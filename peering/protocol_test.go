package peering

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// rawPeer is a hand-driven dialer: the test plays the peer's side of the
// protocol against a real acceptor.
type rawPeer struct {
	t      *testing.T
	stream pbpeerstream.PeerStreamService_StreamResourcesClient
	msgs   chan *pbpeerstream.ReplicationMessage
	err    chan error
}

// openRaw establishes a peering named "b" on a and opens its stream.
func openRaw(t *testing.T, a *testCluster) (*rawPeer, string) {
	t.Helper()
	id, secret := acceptorPeering(t, a, "b")
	client := streamClient(t, a)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	resp, err := client.ExchangeSecret(ctx, &pbpeerstream.ExchangeSecretRequest{PeerId: id, EstablishmentSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := client.StreamResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rp := &rawPeer{t: t, stream: stream, msgs: make(chan *pbpeerstream.ReplicationMessage, 1024), err: make(chan error, 1)}
	rp.send(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Open{Open: &pbpeerstream.Open{
		PeerId: id, StreamSecretId: resp.GetStreamSecret(), Remote: &pbpeerstream.Remote{Datacenter: "dc9"},
	}}})
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				rp.err <- err
				return
			}
			rp.msgs <- m
		}
	}()
	return rp, id
}

func (rp *rawPeer) send(m *pbpeerstream.ReplicationMessage) {
	rp.t.Helper()
	if err := rp.stream.Send(m); err != nil {
		rp.t.Fatalf("send: %v", err)
	}
}

func (rp *rawPeer) subscribe(url string) {
	rp.t.Helper()
	rp.send(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Request{Request: &pbpeerstream.Request{ResourceUrl: url}}})
}

// next returns the next message matching pred, skipping others.
func (rp *rawPeer) next(what string, pred func(*pbpeerstream.ReplicationMessage) bool) *pbpeerstream.ReplicationMessage {
	rp.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-rp.msgs:
			if pred(m) {
				return m
			}
		case err := <-rp.err:
			rp.t.Fatalf("waiting for %s: stream ended: %v", what, err)
		case <-deadline:
			rp.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func isServiceResponse(name string) func(*pbpeerstream.ReplicationMessage) bool {
	return func(m *pbpeerstream.ReplicationMessage) bool {
		r := m.GetResponse()
		return r != nil && r.GetResourceUrl() == pbpeerstream.TypeURLExportedService && r.GetResourceId() == name
	}
}

func isNACKOf(nonce string) func(*pbpeerstream.ReplicationMessage) bool {
	return func(m *pbpeerstream.ReplicationMessage) bool {
		r := m.GetRequest()
		return r != nil && r.GetResponseNonce() == nonce && r.GetError() != nil
	}
}

func TestNACKTriggersFullResend(t *testing.T) {
	a := newTestCluster(t, "a", "dc1", nil)
	register(t, a, "n1", "10.1.0.1", "web", "web-1", 80, state.HealthPassing)
	export(t, a, map[string][]string{"web": {"b"}})
	rp, id := openRaw(t, a)
	rp.subscribe(pbpeerstream.TypeURLExportedService)

	first := rp.next("the full sync of web", isServiceResponse("web")).GetResponse()
	if !first.GetFullSync() || !first.GetSyncEnd() {
		t.Fatalf("first response: got full_sync=%v sync_end=%v, want both", first.GetFullSync(), first.GetSyncEnd())
	}
	rp.send(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Request{Request: &pbpeerstream.Request{
		ResourceUrl: first.GetResourceUrl(), ResponseNonce: first.GetNonce(), Error: &pbpeerstream.Status{Code: int32(codes.Internal), Message: "disk full"},
	}}})
	again := rp.next("the resend of web", isServiceResponse("web")).GetResponse()
	var es pbpeerstream.ExportedService
	if err := proto.Unmarshal(again.GetResource(), &es); err != nil {
		t.Fatal(err)
	}
	if !es.GetFull() || len(es.GetInstances()) != 1 || again.GetVersion() <= first.GetVersion() || again.GetNonce() == first.GetNonce() {
		t.Fatalf("resend: got full=%v instances=%d version %d (first %d), want a full resource at a higher version", es.GetFull(), len(es.GetInstances()), again.GetVersion(), first.GetVersion())
	}
	waitFor(t, 2*time.Second, "the NACK counted", func() bool {
		return counterValue(t, a.peering.metrics.nacks.WithLabelValues("b", "received")) == 1
	})

	// ACKs quoting unknown nonces are ignored and counted; the stream stays.
	rp.send(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Request{Request: &pbpeerstream.Request{
		ResourceUrl: pbpeerstream.TypeURLExportedService, ResponseNonce: "deadbeef",
	}}})
	waitFor(t, 2*time.Second, "the unknown nonce counted", func() bool {
		return counterValue(t, a.peering.metrics.unknownNonces.WithLabelValues("b")) == 1
	})

	// Responses the acceptor cannot use are NACKed, and nothing is imported.
	bad := []*pbpeerstream.Response{
		{ResourceUrl: "type.googleapis.com/hashicorp.consul.internal.peering.PeeringTrustBundle", ResourceId: "roots", Nonce: "x1", Version: 1, Operation: pbpeerstream.Operation_OPERATION_UPSERT},
		{ResourceUrl: pbpeerstream.TypeURLExportedService, ResourceId: "evil", Nonce: "x2", Version: 1, Operation: pbpeerstream.Operation_OPERATION_UPSERT, Resource: []byte{0xff, 0xff, 0xff}},
		{ResourceUrl: pbpeerstream.TypeURLExportedService, ResourceId: "evil", Nonce: "x3", Version: 1, Operation: pbpeerstream.Operation_OPERATION_UPSERT,
			Resource: mustMarshal(t, &pbpeerstream.ExportedService{Name: "evil", Instances: []*pbpeerstream.ServiceInstance{{NodeName: "n", ServiceId: "s", Service: "other", HealthStatus: 1}}})},
		{ResourceUrl: pbpeerstream.TypeURLServerAddresses, ResourceId: pbpeerstream.ResourceIDServerAddresses, Nonce: "x4", Version: 1, Operation: pbpeerstream.Operation_OPERATION_UPSERT,
			Resource: mustMarshal(t, &pbpeerstream.ServerAddresses{Addresses: []string{"10.0.0.1:8503"}})},
		{ResourceUrl: pbpeerstream.TypeURLExportedService, ResourceId: "evil", Nonce: "x5", Version: 1, Operation: pbpeerstream.Operation_OPERATION_UPSERT, ChunkIndex: 1, ChunkCount: 2},
	}
	for _, r := range bad {
		rp.send(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Response{Response: r}})
		nack := rp.next("a NACK of "+r.GetNonce(), isNACKOf(r.GetNonce())).GetRequest()
		if nack.GetError().GetCode() != int32(codes.InvalidArgument) {
			t.Errorf("NACK of %s: got code %d (%s), want InvalidArgument", r.GetNonce(), nack.GetError().GetCode(), nack.GetError().GetMessage())
		}
	}
	if _, svcs, _ := a.cluster.Store().Services(nil, "b"); len(svcs) != 0 {
		t.Fatalf("imported from refused responses: %v", svcs)
	}
	if _, row, _ := a.cluster.Store().PeeringByID(nil, id); row.State != state.PeeringActive || row.Remote.Datacenter != "dc9" || len(row.PeerServerAddresses) != 0 {
		t.Fatalf("acceptor row: got %+v, want ACTIVE, remote dc9, no server addresses", row)
	}

	// A valid import from the raw peer lands in the catalog.
	good := &pbpeerstream.Response{ResourceUrl: pbpeerstream.TypeURLExportedService, ResourceId: "api", Nonce: "g1", Version: 1, Operation: pbpeerstream.Operation_OPERATION_UPSERT,
		Resource: mustMarshal(t, &pbpeerstream.ExportedService{Name: "api", Full: true, Instances: []*pbpeerstream.ServiceInstance{
			{NodeName: "far", NodeAddress: "10.9.0.1", ServiceId: "api-1", Service: "api", Port: 7000, HealthStatus: pbpeerstream.HealthStatus_HEALTH_STATUS_WARNING},
		}})}
	rp.send(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Response{Response: good}})
	rp.next("the ACK of g1", func(m *pbpeerstream.ReplicationMessage) bool {
		return m.GetRequest().GetResponseNonce() == "g1" && m.GetRequest().GetError() == nil
	})
	if got := importedHealth(t, a, "b", "api", "far/api-1"); got != state.HealthWarning {
		t.Fatalf("imported api: got %s, want warning", got)
	}

	// A structurally invalid message ends the stream with InvalidArgument.
	rp.subscribe("type.googleapis.com/peerd.peerstream.v1.KVEntry")
	select {
	case err := <-rp.err:
		if !strings.Contains(err.Error(), "unknown resource_url") || statusCode(err) != codes.InvalidArgument {
			t.Fatalf("got %v, want InvalidArgument about the resource URL", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream stayed open after an invalid subscription")
	}
}

func TestOneStreamPerPeering(t *testing.T) {
	a := newTestCluster(t, "a", "dc1", nil)
	export(t, a, map[string][]string{})
	id, secret := acceptorPeering(t, a, "b")
	client := streamClient(t, a)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := client.ExchangeSecret(ctx, &pbpeerstream.ExchangeSecretRequest{PeerId: id, EstablishmentSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	open := &pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Open{Open: &pbpeerstream.Open{PeerId: id, StreamSecretId: resp.GetStreamSecret()}}}
	s1, err := client.StreamResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Send(open); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Recv(); err != nil {
		t.Fatal(err)
	}
	s2, err := client.StreamResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Send(open); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Recv(); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := s1.Recv()
		if err != nil {
			if statusCode(err) != codes.Aborted || !strings.Contains(err.Error(), "replaced") {
				t.Fatalf("first stream: got %v, want Aborted (replaced)", err)
			}
			break
		}
	}
	if !a.peering.tracker.get(id).Connected {
		t.Fatal("the second stream is not tracked as connected")
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, b := twoClusters(t, func(c *Config) { c.Registry = reg }, nil)
	register(t, a, "n1", "10.1.0.1", "web", "web-1", 80, state.HealthPassing)
	register(t, b, "m1", "10.2.0.1", "api", "api-1", 80, state.HealthPassing)
	export(t, a, map[string][]string{"web": {"b"}})
	export(t, b, map[string][]string{"api": {"a"}})
	p := establish(t, a, b)
	waitActive(t, p)
	waitFor(t, 10*time.Second, "api imported at a", func() bool { return len(imported(t, a, "b", "api")) == 1 })
	// A token nobody used yet: PENDING, no stream, so no healthy sample.
	if _, err := a.peering.GenerateToken(testContext(t), GenerateTokenRequest{PeerName: "pending"}); err != nil {
		t.Fatal(err)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.GetGauge() != nil:
				got[key] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				got[key] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				got[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for key, want := range map[string]float64{
		"peerd_peering_healthy,peer=b":           1,
		"peerd_peering_exported_services,peer=b": 1,
		"peerd_peering_imported_services,peer=b": 1,
	} {
		if got[key] != want {
			t.Errorf("%s: got %v, want %v", key, got[key], want)
		}
	}
	if v, ok := got["peerd_peering_healthy,peer=pending"]; ok {
		t.Errorf("peerd_peering_healthy for a PENDING peering: got %v, want no sample", v)
	}
	if _, ok := got["peerd_peering_exported_services,peer=pending"]; !ok {
		t.Error("peerd_peering_exported_services for a PENDING peering: no sample")
	}
	for _, key := range []string{
		"peerd_peering_message_bytes_total,direction=sent,peer=b",
		"peerd_peering_message_bytes_total,direction=received,peer=b",
		"peerd_peering_replication_lag_seconds,peer=b",
	} {
		if got[key] <= 0 {
			t.Errorf("%s: got %v, want > 0", key, got[key])
		}
	}
}

func TestFullSyncDeletesUnknownInitialVersions(t *testing.T) {
	a := newTestCluster(t, "a", "dc1", nil)
	register(t, a, "n1", "10.1.0.1", "web", "web-1", 80, state.HealthPassing)
	export(t, a, map[string][]string{"web": {"b"}})
	rp, _ := openRaw(t, a)
	rp.send(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Request{Request: &pbpeerstream.Request{
		ResourceUrl: pbpeerstream.TypeURLExportedService, InitialVersions: map[string]uint64{"web": 7, "gone": 3},
	}}})
	web := rp.next("web", isServiceResponse("web")).GetResponse()
	gone := rp.next("gone", isServiceResponse("gone")).GetResponse()
	if web.GetOperation() != pbpeerstream.Operation_OPERATION_UPSERT || !web.GetFullSync() || web.GetSyncEnd() {
		t.Errorf("web: got %v full_sync=%v sync_end=%v, want an UPSERT inside the sync", web.GetOperation(), web.GetFullSync(), web.GetSyncEnd())
	}
	if gone.GetOperation() != pbpeerstream.Operation_OPERATION_DELETE || !gone.GetFullSync() || !gone.GetSyncEnd() {
		t.Errorf("gone: got %v full_sync=%v sync_end=%v, want the DELETE ending the sync", gone.GetOperation(), gone.GetFullSync(), gone.GetSyncEnd())
	}
}
