package peering

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

// answer sends r from the raw peer and returns the acceptor's ACK or NACK.
func (rp *rawPeer) answer(r *pbpeerstream.Response) *pbpeerstream.Request {
	rp.t.Helper()
	rp.send(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Response{Response: r}})
	return rp.next("the answer to "+r.GetNonce(), func(m *pbpeerstream.ReplicationMessage) bool {
		return m.GetRequest().GetResponseNonce() == r.GetNonce()
	}).GetRequest()
}

// serviceResponse is a full ExportedService upsert of name with instances
// n1..nN/<name>-i, each changed by mod (if set).
func serviceResponse(t testing.TB, nonce, name string, n int, mod func(*pbpeerstream.ServiceInstance)) *pbpeerstream.Response {
	t.Helper()
	es := &pbpeerstream.ExportedService{Name: name, Full: true}
	for i := range n {
		in := &pbpeerstream.ServiceInstance{
			NodeName: fmt.Sprintf("n%d", i), NodeAddress: "10.9.0.1", ServiceId: fmt.Sprintf("%s-%d", name, i), Service: name, Port: 7000,
			GatewayAddress: "10.9.0.1", GatewayPort: 8443, HealthStatus: pbpeerstream.HealthStatus_HEALTH_STATUS_PASSING,
		}
		if mod != nil {
			mod(in)
		}
		es.Instances = append(es.Instances, in)
	}
	return &pbpeerstream.Response{ResourceUrl: pbpeerstream.TypeURLExportedService, ResourceId: name, Nonce: nonce, Version: 1,
		Operation: pbpeerstream.Operation_OPERATION_UPSERT, Resource: mustMarshal(t, es)}
}

// bundleResponse is a trust bundle claiming td, with a root of rootTD.
func bundleResponse(t testing.TB, nonce, td, rootTD string) *pbpeerstream.Response {
	t.Helper()
	root, err := identity.CA{}.NewRoot(spiffeid.RequireTrustDomainFromString(rootTD))
	if err != nil {
		t.Fatal(err)
	}
	return &pbpeerstream.Response{ResourceUrl: pbpeerstream.TypeURLTrustBundle, ResourceId: pbpeerstream.ResourceIDTrustBundle, Nonce: nonce, Version: 1,
		Operation: pbpeerstream.Operation_OPERATION_UPSERT,
		Resource:  mustMarshal(t, &pbpeerstream.TrustBundle{TrustDomain: td, RootPems: []string{root.CertPEM}})}
}

func wantNACK(t *testing.T, what string, got *pbpeerstream.Request, code codes.Code, contains string) {
	t.Helper()
	e := got.GetError()
	if e == nil {
		t.Fatalf("%s: got an ACK, want a NACK (%s)", what, code)
	}
	if e.GetCode() != int32(code) || !strings.Contains(e.GetMessage(), contains) {
		t.Fatalf("%s: got NACK %s %q, want %s containing %q", what, codes.Code(e.GetCode()), e.GetMessage(), code, contains)
	}
}

func wantACK(t *testing.T, what string, got *pbpeerstream.Request) {
	t.Helper()
	if e := got.GetError(); e != nil {
		t.Fatalf("%s: got NACK %s %q, want an ACK", what, codes.Code(e.GetCode()), e.GetMessage())
	}
}

// readStatus reads the peering "b" through the API the HTTP endpoint calls.
func readStatus(t *testing.T, c *testCluster) StreamStatus {
	t.Helper()
	info, err := c.peering.Read(testContext(t), "b")
	if err != nil || info == nil {
		t.Fatalf("read peering b: %v %v", info, err)
	}
	return info.StreamStatus
}

func TestServiceAndInstanceQuotas(t *testing.T) {
	a := newTestCluster(t, "a", "dc1", func(c *Config) {
		c.Quotas = Quotas{MaxImportedServices: 3, MaxImportedInstances: 10}
	})
	rp, _ := openRaw(t, a)
	for i := range 3 {
		wantACK(t, fmt.Sprintf("service %d", i), rp.answer(serviceResponse(t, fmt.Sprintf("s%d", i), fmt.Sprintf("svc-%d", i), 2, nil)))
	}
	// A fourth service: refused whole, nothing of it imported.
	wantNACK(t, "a fourth service", rp.answer(serviceResponse(t, "s3", "svc-3", 1, nil)), codes.ResourceExhausted, "quota services")
	if got := imported(t, a, "b", "svc-3"); len(got) != 0 {
		t.Fatalf("the refused service was imported: %v", got)
	}
	// Growing a service past the instance quota (6 + 5 - 2 > 10): refused
	// whole, the service keeps its 2 instances.
	wantNACK(t, "too many instances", rp.answer(serviceResponse(t, "s4", "svc-0", 7, nil)), codes.ResourceExhausted, "quota instances")
	if got := imported(t, a, "b", "svc-0"); len(got) != 2 {
		t.Fatalf("svc-0 after the refused upsert: %d instances, want the 2 it had", len(got))
	}
	// Up to the quota is fine (6 - 2 + 6 = 10), and shrinking frees room.
	wantACK(t, "exactly the instance quota", rp.answer(serviceResponse(t, "s5", "svc-0", 6, nil)))
	wantACK(t, "a shrinking service", rp.answer(serviceResponse(t, "s6", "svc-1", 0, nil)))
	wantACK(t, "a service in the room freed", rp.answer(serviceResponse(t, "s7", "svc-3", 2, nil)))
	// An exported-services list longer than the service quota.
	wantNACK(t, "a long list", rp.answer(&pbpeerstream.Response{ResourceUrl: pbpeerstream.TypeURLExportedServiceList,
		ResourceId: pbpeerstream.ResourceIDExportedServiceList, Nonce: "l1", Version: 1, Operation: pbpeerstream.Operation_OPERATION_UPSERT,
		Resource: mustMarshal(t, &pbpeerstream.ExportedServiceList{Services: []string{"w", "x", "y", "z"}})}), codes.ResourceExhausted, "quota services")

	st := readStatus(t, a)
	if st.QuotaRefusals[quotaServices] != 2 || st.QuotaRefusals[quotaInstances] != 1 || !strings.Contains(st.LastRefusal, "exported-services list") {
		t.Fatalf("status: got refusals %v, last %q; want services 2, instances 1, the list last", st.QuotaRefusals, st.LastRefusal)
	}
	if got := counterValue(t, a.peering.metrics.quotaRefusals.WithLabelValues("b", quotaServices)); got != 2 {
		t.Fatalf("peerd_peering_quota_refusals_total{quota=services}: got %v, want 2", got)
	}
}

// TestQuotasInABatch sends upserts back to back, so that they queue and
// are committed together: the quota still holds message by message.
func TestQuotasInABatch(t *testing.T) {
	a := newTestCluster(t, "a", "dc1", func(c *Config) { c.Quotas = Quotas{MaxImportedServices: 5} })
	rp, _ := openRaw(t, a)
	const n = 40
	for i := range n {
		rp.send(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Response{
			Response: serviceResponse(t, fmt.Sprintf("b%02d", i), fmt.Sprintf("svc-%02d", i), 1, nil)}})
	}
	acked, nacked := 0, 0
	for acked+nacked < n {
		r := rp.next("an answer", func(m *pbpeerstream.ReplicationMessage) bool { return m.GetRequest().GetResponseNonce() != "" }).GetRequest()
		if r.GetError() != nil {
			nacked++
		} else {
			acked++
		}
	}
	_, svcs, err := a.cluster.Store().Services(nil, "b")
	if err != nil {
		t.Fatal(err)
	}
	if acked != 5 || nacked != n-5 || len(svcs) != 5 {
		t.Fatalf("got %d ACKs, %d NACKs, %d services imported; want 5, %d, 5", acked, nacked, len(svcs), n-5)
	}
}

func TestMessageRateQuota(t *testing.T) {
	a := newTestCluster(t, "a", "dc1", func(c *Config) { c.Quotas = Quotas{MaxMessagesPerSecond: 1, MessageBurst: 3} })
	rp, _ := openRaw(t, a)
	const n = 20
	start := time.Now()
	for i := range n {
		rp.send(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Response{
			Response: serviceResponse(t, fmt.Sprintf("r%02d", i), fmt.Sprintf("svc-%02d", i), 1, nil)}})
	}
	acked, limited := 0, 0
	for acked+limited < n {
		r := rp.next("an answer", func(m *pbpeerstream.ReplicationMessage) bool { return m.GetRequest().GetResponseNonce() != "" }).GetRequest()
		switch e := r.GetError(); {
		case e == nil:
			acked++
		case e.GetCode() == int32(codes.ResourceExhausted) && strings.Contains(e.GetMessage(), "quota messages_per_second"):
			limited++
		default:
			t.Fatalf("NACK %s %q, want ResourceExhausted for the rate", codes.Code(e.GetCode()), e.GetMessage())
		}
	}
	// The burst, plus one a second while the test ran.
	if allowed := 3 + int(time.Since(start).Seconds()) + 1; acked > allowed || acked < 3 {
		t.Fatalf("got %d responses accepted, want 3 to %d (burst 3, 1/s)", acked, allowed)
	}
	if got := counterValue(t, a.peering.metrics.quotaRefusals.WithLabelValues("b", quotaMessageRate)); got != float64(limited) {
		t.Fatalf("rate refusals counted: got %v, want %d", got, limited)
	}
	if st := readStatus(t, a); st.QuotaRefusals[quotaMessageRate] != uint64(limited) {
		t.Fatalf("status: got %v, want %d rate refusals", st.QuotaRefusals, limited)
	}
}

func TestTrustDomainPinned(t *testing.T) {
	a := newTestCluster(t, "a", "dc1", nil)
	own, err := a.peering.trustDomain()
	if err != nil {
		t.Fatal(err)
	}
	// Another peering of a's, whose peer has trust domain other.peerd.
	apply(t, a, &catalog.Command{Type: catalog.CmdPeeringWrite, Peering: &state.PeeringWriteRequest{
		Peering: &state.Peering{ID: uuid.NewString(), Name: "c", State: state.PeeringActive, PeerTrustDomain: "other.peerd"},
	}})
	rp, id := openRaw(t, a)
	// Nothing pinned yet: a bundle claiming our trust domain or another
	// peer's is refused.
	wantNACK(t, "our own trust domain", rp.answer(bundleResponse(t, "x1", own.Name(), own.Name())), codes.InvalidArgument, "this cluster's own trust domain")
	wantNACK(t, "another peer's trust domain", rp.answer(bundleResponse(t, "x2", "other.peerd", "other.peerd")), codes.InvalidArgument, `peering "c"`)
	// The first acceptable bundle pins the acceptor's view of the dialer.
	wantACK(t, "the first bundle", rp.answer(bundleResponse(t, "t1", "first.peerd", "first.peerd")))
	waitFor(t, 5*time.Second, "the trust domain pinned", func() bool {
		_, p, _ := a.cluster.Store().PeeringByID(nil, id)
		return p.PeerTrustDomain == "first.peerd"
	})
	wantACK(t, "the same bundle again", rp.answer(bundleResponse(t, "t2", "first.peerd", "first.peerd")))
	wantNACK(t, "a changed trust domain", rp.answer(bundleResponse(t, "x3", "second.peerd", "second.peerd")), codes.InvalidArgument, "pinned at establishment")
	wantNACK(t, "a root of another trust domain", rp.answer(bundleResponse(t, "x4", "first.peerd", "second.peerd")), codes.InvalidArgument, "holds a root of trust domain")
	_, p, _ := a.cluster.Store().PeeringByID(nil, id)
	_, tb, _ := a.cluster.Store().TrustBundle(nil, "b")
	if p.PeerTrustDomain != "first.peerd" || tb == nil || tb.TrustDomain != "first.peerd" {
		t.Fatalf("after the refused bundles: peering trust domain %q, bundle %+v; want first.peerd kept", p.PeerTrustDomain, tb)
	}
	if got := counterValue(t, a.peering.metrics.importRefusals.WithLabelValues("b", refuseTrustDomain)); got != 4 {
		t.Fatalf("trust domain refusals counted: got %v, want 4", got)
	}
	if st := readStatus(t, a); st.ImportRefusals[refuseTrustDomain] != 4 {
		t.Fatalf("status: got %v, want 4 trust domain refusals", st.ImportRefusals)
	}
}

func TestEstablishRefusesAnExistingPeersTrustDomain(t *testing.T) {
	a, b := establishedPair(t) // a dials b as "b"
	ctx := testContext(t)
	// b's second token (for "a2") names b's trust domain again.
	tok, err := b.peering.GenerateToken(ctx, GenerateTokenRequest{PeerName: "a2"})
	if err != nil {
		t.Fatal(err)
	}
	err = a.peering.Establish(ctx, EstablishRequest{PeerName: "b2", PeeringToken: tok})
	if err == nil || !strings.Contains(err.Error(), `peering "b" already has that trust domain`) {
		t.Fatalf("establish b2 with b's trust domain: got %v, want a refusal naming peering b", err)
	}
	if p := storedPeering(t, a, "b2"); p != nil {
		t.Fatalf("the refused establishment stored %+v", p)
	}
}

func TestImportValidation(t *testing.T) {
	a := newTestCluster(t, "a", "dc1", func(c *Config) { c.AllowLocalGateways = false })
	rp, _ := openRaw(t, a)
	td := "peer.peerd"
	sni := func(svc string) string { return svc + ".default.default.a.external." + td }
	// Before any bundle, instances naming identities cannot be checked.
	wantNACK(t, "SNI before the bundle", rp.answer(serviceResponse(t, "v0", "web", 1, func(in *pbpeerstream.ServiceInstance) { in.Sni = sni("web") })),
		codes.FailedPrecondition, "trust domain is not known yet")
	wantACK(t, "the bundle", rp.answer(bundleResponse(t, "tb", td, td)))

	for _, tt := range []struct {
		name, reason, want string
		mod                func(*pbpeerstream.ServiceInstance)
	}{
		{"loopback gateway", refuseGateway, "is loopback", func(in *pbpeerstream.ServiceInstance) { in.GatewayAddress = "127.0.0.1" }},
		{"IPv6 loopback gateway", refuseGateway, "is loopback", func(in *pbpeerstream.ServiceInstance) { in.GatewayAddress = "::1" }},
		{"mapped loopback gateway", refuseGateway, "is loopback", func(in *pbpeerstream.ServiceInstance) { in.GatewayAddress = "::ffff:127.0.0.2" }},
		{"link-local gateway", refuseGateway, "is link-local", func(in *pbpeerstream.ServiceInstance) { in.GatewayAddress = "169.254.169.254" }},
		{"unspecified gateway", refuseGateway, "is unspecified", func(in *pbpeerstream.ServiceInstance) { in.GatewayAddress = "0.0.0.0" }},
		{"multicast gateway", refuseGateway, "is multicast", func(in *pbpeerstream.ServiceInstance) { in.GatewayAddress = "239.1.2.3" }},
		{"hostname gateway", refuseGateway, "not an IP address", func(in *pbpeerstream.ServiceInstance) { in.GatewayAddress = "localhost" }},
		{"SNI of another trust domain", refuseSNI, "not under the peer's trust domain", func(in *pbpeerstream.ServiceInstance) { in.Sni = "web.default.default.a.external.evil.peerd" }},
		{"malformed SNI", refuseSNI, "SNI", func(in *pbpeerstream.ServiceInstance) { in.Sni = "web..x." + td }},
		{"SPIFFE ID of another trust domain", refuseSPIFFEID, "not in the peer's trust domain", func(in *pbpeerstream.ServiceInstance) {
			in.SpiffeIds = []string{"spiffe://" + td + "/ns/default/dc/dc9/svc/web", "spiffe://evil.peerd/ns/default/dc/dc9/svc/web"}
		}},
		{"malformed SPIFFE ID", refuseSPIFFEID, "SPIFFE ID", func(in *pbpeerstream.ServiceInstance) { in.SpiffeIds = []string{"https://" + td + "/x"} }},
		{"bad meta key", refuseMeta, "meta key", func(in *pbpeerstream.ServiceInstance) { in.Meta = map[string]string{"a b": "x"} }},
		{"long meta value", refuseMeta, "meta value", func(in *pbpeerstream.ServiceInstance) { in.Meta = map[string]string{"k": strings.Repeat("x", 513)} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := counterValue(t, a.peering.metrics.importRefusals.WithLabelValues("b", tt.reason))
			wantNACK(t, tt.name, rp.answer(serviceResponse(t, "v-"+tt.name, "web", 2, tt.mod)), codes.InvalidArgument, tt.want)
			if got := imported(t, a, "b", "web"); len(got) != 0 {
				t.Fatalf("imported %v from a refused resource", got)
			}
			if got := counterValue(t, a.peering.metrics.importRefusals.WithLabelValues("b", tt.reason)); got != before+1 {
				t.Fatalf("refusals for %s: got %v, want %v", tt.reason, got, before+1)
			}
		})
	}
	if st := readStatus(t, a); st.ImportRefusals[refuseGateway] != 7 || st.ImportRefusals[refuseSPIFFEID] != 2 {
		t.Fatalf("status: got %v, want 7 gateway and 2 SPIFFE ID refusals", st.ImportRefusals)
	}

	// A valid instance, carrying reserved meta keys: imported, without them.
	good := serviceResponse(t, "ok", "web", 1, func(in *pbpeerstream.ServiceInstance) {
		in.Sni, in.SpiffeIds = sni("web"), []string{"spiffe://" + td + "/ns/default/dc/dc9/svc/web"}
		in.Meta = map[string]string{"team": "x", "peerd-cgroup": "/sys/fs/cgroup/victim", "PEERD-peer-sni": "evil", state.MetaPeerSPIFFEIDs: "spiffe://evil.peerd/x"}
	})
	wantACK(t, "a valid instance", rp.answer(good))
	csn, ok := imported(t, a, "b", "web")["n0/web-0"]
	if !ok {
		t.Fatal("the valid instance was not imported")
	}
	meta := csn.Service.Meta
	if meta["team"] != "x" || meta["peerd-cgroup"] != "" || meta["PEERD-peer-sni"] != "" || meta[MetaPeerSNI] != sni("web") ||
		meta[MetaPeerSPIFFEIDs] != "spiffe://"+td+"/ns/default/dc/dc9/svc/web" {
		t.Fatalf("imported meta: got %v, want team, the SNI and SPIFFE ID it was sent, no other peerd- key", meta)
	}
	if got := counterValue(t, a.peering.metrics.importRefusals.WithLabelValues("b", refuseReservedMeta)); got != 3 {
		t.Fatalf("reserved meta keys stripped: got %v counted, want 3", got)
	}
}

// TestOwnNodeAddressGateway refuses a gateway at one of this cluster's
// node addresses, when local gateways are not allowed.
func TestOwnNodeAddressGateway(t *testing.T) {
	a := newTestCluster(t, "a", "dc1", func(c *Config) { c.AllowLocalGateways = false })
	register(t, a, "local-1", "10.20.30.40", "db", "db-1", 5432, state.HealthPassing)
	rp, _ := openRaw(t, a)
	wantNACK(t, "our node's address", rp.answer(serviceResponse(t, "o1", "web", 1, func(in *pbpeerstream.ServiceInstance) { in.GatewayAddress = "10.20.30.40" })),
		codes.InvalidArgument, "one of this cluster's node addresses")
	wantACK(t, "another address", rp.answer(serviceResponse(t, "o2", "web", 1, func(in *pbpeerstream.ServiceInstance) { in.GatewayAddress = "10.20.30.41" })))
}

// TestLocalGatewaysAllowed: with AllowLocalGateways (the test harness's
// setting), loopback gateways are imported.
func TestLocalGatewaysAllowed(t *testing.T) {
	a := newTestCluster(t, "a", "dc1", nil)
	rp, _ := openRaw(t, a)
	wantACK(t, "a loopback gateway", rp.answer(serviceResponse(t, "l1", "web", 1, func(in *pbpeerstream.ServiceInstance) { in.GatewayAddress = "127.0.0.1" })))
}

func TestQuotasValidate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Cluster = &catalog.Cluster{}
	cfg.Quotas.MaxInFlightBytes = -1
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "max in-flight bytes -1 is negative") {
		t.Fatalf("got %v, want the negative quota named", err)
	}
	if q := (Quotas{MaxImportedServices: 7}).withDefaults(); q.MaxImportedServices != 7 || q.MaxImportedInstances != DefaultQuotas().MaxImportedInstances {
		t.Fatalf("withDefaults: got %+v", q)
	}
}

// TestPeerThatDoesNotRead: every response is answered, so a peer that
// sends without reading would grow the queue of answers without bound; the
// stream is reset instead.
func TestPeerThatDoesNotRead(t *testing.T) {
	// The raw peer sends no heartbeats: the stale-stream bound (3 heartbeat
	// intervals, 600 ms here) would reset the stream between two slow sends.
	a := newTestCluster(t, "a", "dc1", func(c *Config) { c.HeartbeatTimeout, c.StaleStreamTimeout = time.Minute, time.Minute })
	a.peering.maxQueuedControl = 100
	rp, id := openRaw(t, a) // its reader stops once 1,024 messages wait in rp.msgs
	bad := mustMarshal(t, &pbpeerstream.ExportedService{Name: "x"})
	for i := 0; ; i++ {
		err := rp.stream.Send(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Response{Response: &pbpeerstream.Response{
			ResourceUrl: pbpeerstream.TypeURLExportedService, ResourceId: "y", Nonce: fmt.Sprintf("n%d", i), Version: 1,
			Operation: pbpeerstream.Operation_OPERATION_UPSERT, Resource: bad,
		}}})
		if err != nil || strings.Contains(a.peering.tracker.get(id).LastError, "the peer is not reading") {
			break
		}
		if i > 1_000_000 {
			t.Fatal("a million responses sent, the stream still open")
		}
	}
	waitFor(t, 10*time.Second, "the stream reset for not reading", func() bool {
		return strings.Contains(a.peering.tracker.get(id).LastError, "the peer is not reading")
	})
}
