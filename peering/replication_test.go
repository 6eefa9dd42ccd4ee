package peering

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

func TestFlattenHealth(t *testing.T) {
	check := func(status, out string) *state.HealthCheck {
		return &state.HealthCheck{Status: status, Output: out}
	}
	tests := []struct {
		name       string
		checks     []*state.HealthCheck
		want       pbpeerstream.HealthStatus
		wantOutput string
	}{
		{"no checks", nil, pbpeerstream.HealthStatus_HEALTH_STATUS_PASSING, ""},
		{"passing", []*state.HealthCheck{check("passing", "ok")}, pbpeerstream.HealthStatus_HEALTH_STATUS_PASSING, "ok"},
		{"worst wins", []*state.HealthCheck{check("passing", "ok"), check("critical", "down"), check("warning", "slow")}, pbpeerstream.HealthStatus_HEALTH_STATUS_CRITICAL, "down"},
		{"node check counts", []*state.HealthCheck{check("warning", "node slow"), check("passing", "ok")}, pbpeerstream.HealthStatus_HEALTH_STATUS_WARNING, "node slow"},
		{"maintenance wins", []*state.HealthCheck{check("critical", "down"), check("maintenance", "upgrading")}, pbpeerstream.HealthStatus_HEALTH_STATUS_MAINTENANCE, "upgrading"},
		{"unknown is critical", []*state.HealthCheck{check("bogus", "?")}, pbpeerstream.HealthStatus_HEALTH_STATUS_CRITICAL, "?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, out := flattenHealth(tt.checks)
			if got != tt.want || out != tt.wantOutput {
				t.Fatalf("got %v %q, want %v %q", got, out, tt.want, tt.wantOutput)
			}
		})
	}
}

func TestDecodeResourceRefuses(t *testing.T) {
	svcURL := pbpeerstream.TypeURLExportedService
	resp := func(url, id string, m proto.Message) *pbpeerstream.Response {
		r := &pbpeerstream.Response{ResourceUrl: url, ResourceId: id, Nonce: "1", Version: 1, Operation: pbpeerstream.Operation_OPERATION_UPSERT}
		if m != nil {
			r.Resource, _ = proto.Marshal(m)
		}
		return r
	}
	inst := func(node, sid, svc string) *pbpeerstream.ServiceInstance {
		return &pbpeerstream.ServiceInstance{NodeName: node, ServiceId: sid, Service: svc, HealthStatus: pbpeerstream.HealthStatus_HEALTH_STATUS_PASSING}
	}
	tests := []struct {
		name   string
		r      *pbpeerstream.Response
		dialer bool
		want   string
	}{
		{"garbage", &pbpeerstream.Response{ResourceUrl: svcURL, ResourceId: "web", Version: 1, Operation: pbpeerstream.Operation_OPERATION_UPSERT, Resource: []byte{0x0a, 0xff}}, false, "decode"},
		{"name mismatch", resp(svcURL, "web", &pbpeerstream.ExportedService{Name: "api"}), false, "under resource ID"},
		{"instance of another service", resp(svcURL, "web", &pbpeerstream.ExportedService{Name: "web", Instances: []*pbpeerstream.ServiceInstance{inst("n", "s", "api")}}), false, "instance of service"},
		{"instance without service ID", resp(svcURL, "web", &pbpeerstream.ExportedService{Name: "web", Instances: []*pbpeerstream.ServiceInstance{inst("n", "", "web")}}), false, "service ID"},
		{"node name with slash", resp(svcURL, "web", &pbpeerstream.ExportedService{Name: "web", Instances: []*pbpeerstream.ServiceInstance{inst("a/b", "s", "web")}}), false, "node name"},
		{"duplicate instance", resp(svcURL, "web", &pbpeerstream.ExportedService{Name: "web", Instances: []*pbpeerstream.ServiceInstance{inst("n", "s", "web"), inst("n", "s", "web")}}), false, "twice"},
		{"unspecified health", resp(svcURL, "web", &pbpeerstream.ExportedService{Name: "web", Instances: []*pbpeerstream.ServiceInstance{{NodeName: "n", ServiceId: "s", Service: "web"}}}), false, "health status"},
		{"removed IDs in a full resource", resp(svcURL, "web", &pbpeerstream.ExportedService{Name: "web", Full: true, RemovedInstanceIds: []string{"n/s"}}), false, "full resource"},
		{"bad removed ID", resp(svcURL, "web", &pbpeerstream.ExportedService{Name: "web", RemovedInstanceIds: []string{"nope"}}), false, "node/service-id"},
		{"health updates in a full resource", resp(svcURL, "web", &pbpeerstream.ExportedService{Name: "web", Full: true, HealthUpdates: []*pbpeerstream.InstanceHealth{{InstanceId: "n/s", HealthStatus: 1}}}), false, "full resource"},
		{"bad health update ID", resp(svcURL, "web", &pbpeerstream.ExportedService{Name: "web", HealthUpdates: []*pbpeerstream.InstanceHealth{{InstanceId: "nope", HealthStatus: 1}}}), false, "node/service-id"},
		{"unspecified health update", resp(svcURL, "web", &pbpeerstream.ExportedService{Name: "web", HealthUpdates: []*pbpeerstream.InstanceHealth{{InstanceId: "n/s"}}}), false, "health status"},
		{"health update of a listed instance", resp(svcURL, "web", &pbpeerstream.ExportedService{Name: "web", Instances: []*pbpeerstream.ServiceInstance{inst("n", "s", "web")}, HealthUpdates: []*pbpeerstream.InstanceHealth{{InstanceId: "n/s", HealthStatus: 1}}}), false, "twice"},
		{"empty list name", resp(pbpeerstream.TypeURLExportedServiceList, pbpeerstream.ResourceIDExportedServiceList, &pbpeerstream.ExportedServiceList{Services: []string{""}}), false, "empty service name"},
		{"list under another ID", resp(pbpeerstream.TypeURLExportedServiceList, "x", &pbpeerstream.ExportedServiceList{}), false, "want"},
		{"bundle without roots", resp(pbpeerstream.TypeURLTrustBundle, pbpeerstream.ResourceIDTrustBundle, &pbpeerstream.TrustBundle{TrustDomain: "x.peerd"}), false, "no root"},
		{"bundle with a bad PEM", resp(pbpeerstream.TypeURLTrustBundle, pbpeerstream.ResourceIDTrustBundle, &pbpeerstream.TrustBundle{TrustDomain: "x.peerd", RootPems: []string{"nope"}}), false, "trust bundle"},
		{"addresses to the acceptor", resp(pbpeerstream.TypeURLServerAddresses, pbpeerstream.ResourceIDServerAddresses, &pbpeerstream.ServerAddresses{Addresses: []string{"10.0.0.1:1"}}), false, "dialer only"},
		{"address without port", resp(pbpeerstream.TypeURLServerAddresses, pbpeerstream.ResourceIDServerAddresses, &pbpeerstream.ServerAddresses{Addresses: []string{"10.0.0.1"}}), true, "host:port"},
		{"empty addresses", resp(pbpeerstream.TypeURLServerAddresses, pbpeerstream.ResourceIDServerAddresses, &pbpeerstream.ServerAddresses{}), true, "empty"},
		{"delete of the trust bundle", &pbpeerstream.Response{ResourceUrl: pbpeerstream.TypeURLTrustBundle, ResourceId: pbpeerstream.ResourceIDTrustBundle, Version: 1, Operation: pbpeerstream.Operation_OPERATION_DELETE}, false, "not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeResource(tt.r, tt.r.GetResource(), tt.dialer)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

func TestChunksOnTheWire(t *testing.T) {
	a := newTestCluster(t, "a", "dc1", func(c *Config) { c.MaxMessageBytes = 1024 })
	const n = 30
	for i := range n {
		register(t, a, fmt.Sprintf("node-%02d", i), fmt.Sprintf("10.1.0.%d", i+1), "web", fmt.Sprintf("web-%02d", i), 8080, state.HealthPassing)
	}
	export(t, a, map[string][]string{"web": {"b"}})
	rp, _ := openRaw(t, a)
	rp.subscribe(pbpeerstream.TypeURLExportedService)
	var payload []byte
	var count uint32
	var nonces []string
	for {
		m := rp.next("a chunk of web", isServiceResponse("web"))
		if size := proto.Size(m); size > 1024 {
			t.Fatalf("chunk of %d bytes, above the 1024-byte limit", size)
		}
		r := m.GetResponse()
		if count == 0 {
			count = r.GetChunkCount()
		}
		if r.GetChunkCount() != count || int(r.GetChunkIndex()) != len(nonces) || r.GetVersion() != 1 {
			t.Fatalf("chunk %d/%d version %d: out of sequence after %d", r.GetChunkIndex(), r.GetChunkCount(), r.GetVersion(), len(nonces))
		}
		nonces = append(nonces, r.GetNonce())
		payload = append(payload, r.GetResource()...)
		if r.GetChunkIndex() == count-1 {
			if !r.GetSyncEnd() {
				t.Fatal("the last chunk of the sync does not end it")
			}
			break
		}
		if r.GetSyncEnd() {
			t.Fatal("sync_end on a chunk before the last")
		}
	}
	if count < 2 {
		t.Fatalf("got %d chunks, want the resource split", count)
	}
	var es pbpeerstream.ExportedService
	if err := proto.Unmarshal(payload, &es); err != nil {
		t.Fatalf("reassembled resource: %v", err)
	}
	if len(es.GetInstances()) != n || !es.GetFull() {
		t.Fatalf("reassembled: %d instances, full=%v; want %d, full", len(es.GetInstances()), es.GetFull(), n)
	}
	if len(nonces) != int(count) || nonces[0] == nonces[1] {
		t.Fatalf("nonces %v: want one distinct nonce per chunk", nonces)
	}
}

// FuzzApplyReplicationMessage feeds arbitrary bytes through what the
// receiver does with a message before the raft write: unmarshal, Validate,
// chunk reassembly, decodeResource and planImport. Nothing may panic; a
// message refused on the way must come with an error; whatever is planned
// must be writable by the state store and stay inside the peer's namespace.
func FuzzApplyReplicationMessage(f *testing.F) {
	add := func(m *pbpeerstream.ReplicationMessage) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	res := func(url, id string, m proto.Message, mod func(*pbpeerstream.Response)) *pbpeerstream.ReplicationMessage {
		r := &pbpeerstream.Response{ResourceUrl: url, ResourceId: id, Nonce: "00000001", Version: 1, Operation: pbpeerstream.Operation_OPERATION_UPSERT}
		if m != nil {
			r.Resource, _ = proto.Marshal(m)
		}
		if mod != nil {
			mod(r)
		}
		return &pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Response{Response: r}}
	}
	in := &pbpeerstream.ServiceInstance{NodeName: "n1", NodeAddress: "10.0.0.1", ServiceId: "web-1", Service: "web", Port: 80,
		Tags: []string{"a"}, Meta: map[string]string{"k": "v"}, HealthStatus: pbpeerstream.HealthStatus_HEALTH_STATUS_PASSING, Sni: "web.default.default.p.external.x.peerd"}
	add(res(pbpeerstream.TypeURLExportedService, "web", &pbpeerstream.ExportedService{Name: "web", Full: true, Instances: []*pbpeerstream.ServiceInstance{in}}, nil))
	add(res(pbpeerstream.TypeURLExportedService, "web", &pbpeerstream.ExportedService{Name: "web", RemovedInstanceIds: []string{"n1/web-1"}}, nil))
	add(res(pbpeerstream.TypeURLExportedService, "web", &pbpeerstream.ExportedService{Name: "web", HealthUpdates: []*pbpeerstream.InstanceHealth{
		{InstanceId: "n1/web-1", HealthStatus: pbpeerstream.HealthStatus_HEALTH_STATUS_CRITICAL, HealthOutput: "down"}}}, nil))
	add(res(pbpeerstream.TypeURLExportedService, "web", &pbpeerstream.ExportedService{Name: "web", HealthUpdates: []*pbpeerstream.InstanceHealth{
		{InstanceId: "n2/web-2", HealthStatus: pbpeerstream.HealthStatus_HEALTH_STATUS_WARNING}}}, nil))
	add(res(pbpeerstream.TypeURLExportedService, "web", nil, func(r *pbpeerstream.Response) { r.Operation = pbpeerstream.Operation_OPERATION_DELETE }))
	add(res(pbpeerstream.TypeURLExportedService, "web", &pbpeerstream.ExportedService{Name: "web"}, func(r *pbpeerstream.Response) { r.ChunkCount = 1 }))
	add(res(pbpeerstream.TypeURLExportedServiceList, pbpeerstream.ResourceIDExportedServiceList, &pbpeerstream.ExportedServiceList{Services: []string{"web", "api"}}, func(r *pbpeerstream.Response) { r.FullSync, r.SyncEnd = true, true }))
	add(res(pbpeerstream.TypeURLTrustBundle, pbpeerstream.ResourceIDTrustBundle, &pbpeerstream.TrustBundle{TrustDomain: "x.peerd", RootPems: []string{"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"}}, nil))
	add(res(pbpeerstream.TypeURLServerAddresses, pbpeerstream.ResourceIDServerAddresses, &pbpeerstream.ServerAddresses{Addresses: []string{"10.0.0.1:8503"}}, nil))
	add(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Request{Request: &pbpeerstream.Request{ResourceUrl: pbpeerstream.TypeURLExportedService, ResponseNonce: "1"}}})
	add(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Heartbeat{Heartbeat: &pbpeerstream.Heartbeat{}}})

	// The store holds one import from the peer, so removals are planned.
	seed := func(t testing.TB) *state.Store {
		st, err := state.NewStore()
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Register(1, importRequest("p", "", in)); err != nil {
			t.Fatal(err)
		}
		return st
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m pbpeerstream.ReplicationMessage
		if err := proto.Unmarshal(data, &m); err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			if err.Error() == "" {
				t.Fatal("Validate refused with an empty error")
			}
			return
		}
		r := m.GetResponse()
		if r == nil || r.GetResourceId() == "" {
			return
		}
		im := &importer{chunks: map[string]*chunkBuf{}, maxInFlight: DefaultQuotas().MaxInFlightBytes}
		payload, _, complete, err := im.assemble(r, time.Now())
		if err != nil || !complete {
			return
		}
		for _, dialer := range []bool{false, true} {
			d, err := decodeResource(r, payload, dialer)
			if err != nil {
				if d != nil || err.Error() == "" {
					t.Fatalf("decode refused with %v but returned %v", err, d)
				}
				continue
			}
			st := seed(t)
			plan, err := planImport(st, "p", "", r, d)
			if errors.Is(err, errUnknownInstance) {
				if len(d.svc.GetHealthUpdates()) == 0 {
					t.Fatalf("unknown instance refused without health updates: %v", err)
				}
				continue // NACKed: the exporter resends the service in full
			}
			if err != nil {
				t.Fatalf("plan a decoded resource: %v", err)
			}
			for _, reg := range plan.registers {
				if reg.PeerName != "p" || reg.Service.PeerName != "p" || reg.Service.Service != r.GetResourceId() {
					t.Fatalf("planned a registration outside the peer's service: %+v", reg)
				}
				for _, c := range reg.Checks {
					if !state.ValidHealthStatus(c.Status) {
						t.Fatalf("planned check status %q", c.Status)
					}
				}
			}
			for _, dr := range plan.deregisters {
				if dr.PeerName != "p" {
					t.Fatalf("planned a local deregistration: %+v", dr)
				}
			}
			if err := st.RegisterBatch(2, plan.registers); err != nil {
				t.Fatalf("the store refused a planned import: %v", err)
			}
			if err := st.DeregisterBatch(3, plan.deregisters); err != nil {
				t.Fatalf("the store refused a planned removal: %v", err)
			}
		}
	})
}

func TestPlanHealthUpdate(t *testing.T) {
	st, err := state.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	in := &pbpeerstream.ServiceInstance{NodeName: "n1", NodeAddress: "10.0.0.1", NodeId: "id-1", ServiceId: "web-1", Service: "web", Port: 80,
		Meta: map[string]string{"k": "v"}, HealthStatus: pbpeerstream.HealthStatus_HEALTH_STATUS_PASSING, Sni: "web.default.default.p.external.x.peerd",
		SpiffeIds: []string{"spiffe://x.peerd/ns/default/dc/dc1/svc/web"}, Protocol: "http", GatewayAddress: "10.0.0.1", GatewayPort: 8443}
	if err := st.Register(1, importRequest("p", "", in)); err != nil {
		t.Fatal(err)
	}
	r := &pbpeerstream.Response{ResourceUrl: pbpeerstream.TypeURLExportedService, ResourceId: "web", Version: 2, Operation: pbpeerstream.Operation_OPERATION_UPSERT}
	plan := func(hu ...*pbpeerstream.InstanceHealth) (*importPlan, error) {
		t.Helper()
		r.Resource = mustMarshal(t, &pbpeerstream.ExportedService{Name: "web", HealthUpdates: hu})
		d, err := decodeResource(r, r.GetResource(), false)
		if err != nil {
			t.Fatal(err)
		}
		return planImport(st, "p", "", r, d)
	}

	// The same health plans nothing.
	p, err := plan(&pbpeerstream.InstanceHealth{InstanceId: "n1/web-1", HealthStatus: pbpeerstream.HealthStatus_HEALTH_STATUS_PASSING})
	if err != nil || len(p.registers) != 0 || len(p.deregisters) != 0 {
		t.Fatalf("unchanged health: got %+v, %v; want an empty plan", p, err)
	}

	// A new health re-registers the instance as it was, with the new check.
	p, err = plan(&pbpeerstream.InstanceHealth{InstanceId: "n1/web-1", HealthStatus: pbpeerstream.HealthStatus_HEALTH_STATUS_CRITICAL, HealthOutput: "down"})
	if err != nil || len(p.registers) != 1 || len(p.deregisters) != 0 {
		t.Fatalf("changed health: got %+v, %v; want one registration", p, err)
	}
	want := importRequest("p", "", in)
	want.Checks[0].Status, want.Checks[0].Output = state.HealthCritical, "down"
	got := p.registers[0]
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("health update registration:\n got %+v %+v %+v\nwant %+v %+v %+v", got.Node, got.Service, got.Checks[0], want.Node, want.Service, want.Checks[0])
	}
	if err := st.RegisterBatch(2, p.registers); err != nil {
		t.Fatal(err)
	}
	_, csns, err := st.CheckServiceNodes(nil, "p", "web")
	if err != nil || len(csns) != 1 || !sameImport(csns[0], want) {
		t.Fatalf("after the health update the store holds %+v (%v), want %+v", csns, err, want)
	}

	// An unknown instance is refused, to be NACKed.
	if _, err := plan(&pbpeerstream.InstanceHealth{InstanceId: "n9/web-9", HealthStatus: pbpeerstream.HealthStatus_HEALTH_STATUS_WARNING}); !errors.Is(err, errUnknownInstance) {
		t.Fatalf("unknown instance: got %v, want errUnknownInstance", err)
	}
}

func TestHealthChangeSendsHealthOnly(t *testing.T) {
	a := newTestCluster(t, "a", "dc1", nil)
	register(t, a, "n1", "10.1.0.1", "web", "web-1", 80, state.HealthPassing)
	register(t, a, "n2", "10.1.0.2", "web", "web-2", 80, state.HealthPassing)
	export(t, a, map[string][]string{"web": {"b"}})
	rp, _ := openRaw(t, a)
	rp.subscribe(pbpeerstream.TypeURLExportedService)
	first := rp.next("the full sync of web", isServiceResponse("web")).GetResponse()
	if !first.GetFullSync() {
		t.Fatal("first response is not the full sync")
	}

	setHealth(t, a, "n2", "web-2", state.HealthCritical)
	delta := rp.next("the health change of web", isServiceResponse("web")).GetResponse()
	var es pbpeerstream.ExportedService
	if err := proto.Unmarshal(delta.GetResource(), &es); err != nil {
		t.Fatal(err)
	}
	hu := es.GetHealthUpdates()
	if es.GetFull() || len(es.GetInstances()) != 0 || len(es.GetRemovedInstanceIds()) != 0 || len(hu) != 1 ||
		hu[0].GetInstanceId() != "n2/web-2" || hu[0].GetHealthStatus() != pbpeerstream.HealthStatus_HEALTH_STATUS_CRITICAL {
		t.Fatalf("health change: got %v, want a single health update of n2/web-2 to critical", &es)
	}

	// Refused (an importer that lacks the instance): the service comes in full.
	rp.send(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Request{Request: &pbpeerstream.Request{
		ResourceUrl: delta.GetResourceUrl(), ResponseNonce: delta.GetNonce(), Error: &pbpeerstream.Status{Code: int32(codes.FailedPrecondition), Message: "unknown instance"},
	}}})
	again := rp.next("the resend of web", isServiceResponse("web")).GetResponse()
	es.Reset()
	if err := proto.Unmarshal(again.GetResource(), &es); err != nil {
		t.Fatal(err)
	}
	if !es.GetFull() || len(es.GetInstances()) != 2 || len(es.GetHealthUpdates()) != 0 {
		t.Fatalf("resend: got %v, want both instances in full", &es)
	}

	// A change beyond health sends the whole instance.
	register(t, a, "n1", "10.1.0.1", "web", "web-1", 81, state.HealthWarning)
	delta = rp.next("the port change of web", isServiceResponse("web")).GetResponse()
	es.Reset()
	if err := proto.Unmarshal(delta.GetResource(), &es); err != nil {
		t.Fatal(err)
	}
	if es.GetFull() || len(es.GetInstances()) != 1 || es.GetInstances()[0].GetPort() != 81 || len(es.GetHealthUpdates()) != 0 {
		t.Fatalf("port change: got %v, want the whole instance n1/web-1", &es)
	}
}

// An imported service name is held to the same limit as a local one.
func TestImportedServiceNameLength(t *testing.T) {
	longest := strings.Repeat("s", configentry.MaxServiceNameLength)
	if err := checkServiceName(longest); err != nil {
		t.Fatalf("name of %d bytes: got %v, want it accepted", len(longest), err)
	}
	if err := checkServiceName(longest + "s"); err == nil || !strings.Contains(err.Error(), "longer than 253 bytes") {
		t.Fatalf("name of %d bytes: got %v, want it refused", len(longest)+1, err)
	}
}
