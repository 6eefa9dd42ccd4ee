package peering

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

// Catalog conventions of imported services (defined in catalog, which the
// terminator and the DNS server read too). A node without GatewayPortMeta
// exports its instances with gateway_port 0.
const (
	GatewayPortMeta      = state.GatewayPortMeta
	MetaPeerSNI          = state.MetaPeerSNI
	MetaPeerSPIFFEIDs    = state.MetaPeerSPIFFEIDs
	MetaPeerProtocol     = state.MetaPeerProtocol
	TaggedAddressGateway = state.TaggedAddressGateway
	// importedCheckSuffix makes the one flattened check of an imported
	// instance: "<service ID>:overall-check", as Consul names it.
	importedCheckSuffix = ":overall-check"
)

// maxAssembledBytes bounds a resource reassembled from chunks, whatever
// Quotas.MaxInFlightBytes says.
const maxAssembledBytes = 256 << 20

// importer applies the peer's responses to the local catalog: one raft
// write per response (two when it both adds and removes instances), or per
// batch of queued service upserts (see importBatch). It is used by the
// receive loop only.
type importer struct {
	sess     *session
	chunks   map[string]*chunkBuf
	syncs    map[string]map[string]bool
	versions map[string]uint64
	// inFlight is the memory the unfinished chunked resources hold (see
	// Quotas.MaxInFlightBytes, maxInFlight here).
	inFlight, maxInFlight int
	// counts is what is imported from the peer, loaded at the first write.
	counts *importCounts
	// rate limits the responses the peer sends.
	rate *tokenBucket
	// peerTD is the peer's trust domain pinned with the peering ("" until
	// the acceptor's first trust bundle).
	peerTD string
	// writes counts the raft writes made (for tests).
	writes int
}

type chunkBuf struct {
	version uint64
	count   uint32
	next    uint32
	buf     []byte
	first   time.Time
}

func newImporter(sess *session, peerTD string) *importer {
	q := sess.srv.cfg.Quotas
	return &importer{
		sess: sess, chunks: map[string]*chunkBuf{}, syncs: map[string]map[string]bool{}, versions: map[string]uint64{},
		maxInFlight: min(q.MaxInFlightBytes, maxAssembledBytes), peerTD: peerTD,
		rate: newTokenBucket(q.MaxMessagesPerSecond, q.MessageBurst, sess.srv.cfg.Now()),
	}
}

// checks is what the peer's instances are checked against now.
func (im *importer) checks() (importChecks, error) {
	s := im.sess.srv
	c := importChecks{peerTD: im.peerTD, allowLocal: s.cfg.AllowLocalGateways}
	if !c.allowLocal {
		var err error
		if c.local, err = localAddrs(s.cfg.Cluster.Store()); err != nil {
			return c, err
		}
	}
	return c, nil
}

// refuseRate refuses a response over the message rate, keeping the sync
// bookkeeping as for any refused upsert: what was imported stays, and a
// sync it ends still ends.
func (im *importer) refuseRate(ctx context.Context, r *pbpeerstream.Response) error {
	url, id := r.GetResourceUrl(), r.GetResourceId()
	if id != "" {
		im.dropChunks(resKey(url, id))
		if set := im.syncs[url]; r.GetFullSync() && set != nil {
			set[id] = true
		}
	}
	if r.GetSyncEnd() || id == "" { // as handle ends a sync
		if _, err := im.endSync(ctx, url); err != nil {
			im.sess.log().Warn("ending a sync after a refused response", "url", url, "err", err)
		}
	}
	q := im.sess.srv.cfg.Quotas
	return quotaErr(quotaMessageRate, "more than %d responses per second (burst %d) from this peer; resend later", q.MaxMessagesPerSecond, q.MessageBurst)
}

// subscribed starts tracking the full sync of url; the services declared
// held (initial) count as received unless the sync deletes them.
func (im *importer) subscribed(url string, initial map[string]uint64) {
	set := map[string]bool{}
	for id := range initial {
		set[id] = true
	}
	im.syncs[url] = set
}

// record keeps what the importer now holds of an exported service for the
// next resubscription: the digest of an applied upsert, nothing otherwise.
func (im *importer) record(r *pbpeerstream.Response, payload []byte, err error) {
	if r.GetResourceUrl() != pbpeerstream.TypeURLExportedService {
		return
	}
	ss := im.sess
	if err == nil && r.GetOperation() == pbpeerstream.Operation_OPERATION_UPSERT {
		ss.srv.held.set(ss.id, r.GetResourceId(), payloadDigest(payload))
		return
	}
	ss.srv.held.drop(ss.id, r.GetResourceId())
}

// handle applies one response; an error is the NACK's code and reason.
func (im *importer) handle(ctx context.Context, r *pbpeerstream.Response, arrived time.Time) (codes.Code, error) {
	url, id := r.GetResourceUrl(), r.GetResourceId()
	if r.GetFullSync() && im.syncs[url] == nil {
		im.syncs[url] = map[string]bool{} // a sync we did not ask for
	}
	if id == "" { // a sync_end marker
		return im.endSync(ctx, url)
	}
	key := resKey(url, id)
	payload, start, complete, err := im.assemble(r, arrived)
	if err != nil {
		return refusalCode(err), err
	}
	if !complete {
		return codes.OK, nil // a chunk: ACKed, applied with the last one
	}
	if r.GetVersion() < im.versions[key] {
		return codes.OK, nil // stale: a newer version was applied
	}
	code, err := im.apply(ctx, r, payload)
	im.record(r, payload, err)
	if set := im.syncs[url]; r.GetFullSync() && set != nil {
		if err == nil && r.GetOperation() == pbpeerstream.Operation_OPERATION_DELETE {
			delete(set, id)
		} else {
			set[id] = true // a refused upsert keeps what we had
		}
	}
	if err == nil {
		im.versions[key] = r.GetVersion()
		lag := im.sess.srv.cfg.Now().Sub(start)
		im.sess.srv.metrics.lag.WithLabelValues(im.sess.name).Observe(lag.Seconds())
		im.sess.srv.tracker.lag(im.sess.id, lag)
	}
	if r.GetSyncEnd() {
		if c, e := im.endSync(ctx, url); e != nil && err == nil {
			return c, e
		}
	}
	return code, err
}

// assemble collects the chunks of a resource. It returns the payload and
// when its first part arrived once complete; a resource sent whole is
// complete at once. Chunks out of order void the resource.
func (im *importer) assemble(r *pbpeerstream.Response, arrived time.Time) ([]byte, time.Time, bool, error) {
	if r.GetChunkCount() == 0 {
		return r.GetResource(), arrived, true, nil
	}
	key := resKey(r.GetResourceUrl(), r.GetResourceId())
	buf := im.chunks[key]
	switch {
	case r.GetChunkIndex() == 0:
		im.dropChunks(key) // a new version restarts the resource
		if cost := chunkOverhead + len(key); im.inFlight+cost+len(r.GetResource()) > im.maxInFlight {
			return nil, time.Time{}, false, quotaErr(quotaInFlight, "resource %s: its first chunk would make unfinished chunked resources from this peer hold %d bytes, above the limit of %d",
				shortID(r.GetResourceId()), im.inFlight+cost+len(r.GetResource()), im.maxInFlight)
		}
		buf = &chunkBuf{version: r.GetVersion(), count: r.GetChunkCount(), first: arrived}
		im.chunks[key] = buf
		im.inFlight += chunkOverhead + len(key)
	case buf == nil || buf.version != r.GetVersion() || buf.count != r.GetChunkCount() || buf.next != r.GetChunkIndex():
		im.dropChunks(key)
		return nil, time.Time{}, false, fmt.Errorf("resource %s: chunk %d of %d out of order", shortID(r.GetResourceId()), r.GetChunkIndex(), r.GetChunkCount())
	}
	if err := im.bufferChunk(buf, r.GetResource()); err != nil {
		im.dropChunks(key)
		return nil, time.Time{}, false, fmt.Errorf("resource %s: %w", shortID(r.GetResourceId()), err)
	}
	buf.next++
	if buf.next < buf.count {
		return nil, time.Time{}, false, nil
	}
	im.dropChunks(key)
	return buf.buf, buf.first, true, nil
}

// decodedResource is a response's payload, checked.
type decodedResource struct {
	op     pbpeerstream.Operation
	list   *pbpeerstream.ExportedServiceList
	svc    *pbpeerstream.ExportedService
	bundle *pbpeerstream.TrustBundle
	addrs  *pbpeerstream.ServerAddresses
}

// decodeResource unmarshals and checks a (reassembled) response payload. It
// reads nothing but its arguments. dialer says whether this end dials the
// peering (only the dialer takes server addresses).
func decodeResource(r *pbpeerstream.Response, payload []byte, dialer bool) (*decodedResource, error) {
	url, id := r.GetResourceUrl(), r.GetResourceId()
	d := &decodedResource{op: r.GetOperation()}
	wantID := map[string]string{
		pbpeerstream.TypeURLExportedServiceList: pbpeerstream.ResourceIDExportedServiceList,
		pbpeerstream.TypeURLTrustBundle:         pbpeerstream.ResourceIDTrustBundle,
		pbpeerstream.TypeURLServerAddresses:     pbpeerstream.ResourceIDServerAddresses,
	}
	if w, ok := wantID[url]; ok && id != w {
		return nil, fmt.Errorf("resource ID %s: want %q for this type", shortID(id), w)
	}
	if url == pbpeerstream.TypeURLServerAddresses && !dialer {
		return nil, errors.New("server addresses are sent to the dialer only")
	}
	if url == pbpeerstream.TypeURLExportedService {
		if err := checkServiceName(id); err != nil {
			return nil, fmt.Errorf("resource ID: %w", err)
		}
	}
	if d.op == pbpeerstream.Operation_OPERATION_DELETE {
		switch url {
		case pbpeerstream.TypeURLExportedService, pbpeerstream.TypeURLExportedServiceList:
			return d, nil
		}
		return nil, fmt.Errorf("DELETE of %s is not supported", shortID(url))
	}
	if d.op != pbpeerstream.Operation_OPERATION_UPSERT {
		return nil, fmt.Errorf("unsupported operation %d", d.op)
	}
	msg, ok := pbpeerstream.NewResource(url)
	if !ok {
		return nil, fmt.Errorf("unknown resource type %s", shortID(url))
	}
	if err := proto.Unmarshal(payload, msg); err != nil {
		return nil, fmt.Errorf("decode %s %s: %w", url[strings.LastIndex(url, ".")+1:], shortID(id), err)
	}
	switch m := msg.(type) {
	case *pbpeerstream.ExportedServiceList:
		seen := map[string]bool{}
		for _, n := range m.GetServices() {
			if err := checkServiceName(n); err != nil {
				return nil, fmt.Errorf("exported service list: %w", err)
			}
			if seen[n] {
				return nil, fmt.Errorf("exported service list: %s listed twice", shortID(n))
			}
			seen[n] = true
		}
		d.list = m
	case *pbpeerstream.ExportedService:
		if err := checkExportedService(id, m); err != nil {
			return nil, err
		}
		d.svc = m
	case *pbpeerstream.TrustBundle:
		if _, err := spiffeid.TrustDomainFromString(m.GetTrustDomain()); err != nil {
			return nil, fmt.Errorf("trust bundle: trust domain %s: %w", shortID(m.GetTrustDomain()), err)
		}
		if len(m.GetRootPems()) == 0 {
			return nil, errors.New("trust bundle: no root certificates")
		}
		if _, err := identity.Pool(m.GetRootPems()...); err != nil {
			return nil, fmt.Errorf("trust bundle: %w", err)
		}
		d.bundle = m
	case *pbpeerstream.ServerAddresses:
		if len(m.GetAddresses()) == 0 {
			return nil, errors.New("server addresses: empty list")
		}
		for _, a := range m.GetAddresses() {
			host, port, err := net.SplitHostPort(a)
			if err != nil || host == "" {
				return nil, fmt.Errorf("server address %s: want host:port", shortID(a))
			}
			if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
				return nil, fmt.Errorf("server address %s: port out of range", shortID(a))
			}
		}
		d.addrs = m
	}
	return d, nil
}

// checkServiceName accepts what can be a catalog service name.
func checkServiceName(n string) error {
	switch {
	case n == "":
		return errors.New("empty service name")
	case len(n) > configentry.MaxServiceNameLength:
		return fmt.Errorf("service name %s is longer than %d bytes", shortID(n), configentry.MaxServiceNameLength)
	case strings.ContainsAny(n, "\x00/"):
		return fmt.Errorf("service name %s contains NUL or '/'", shortID(n))
	}
	return nil
}

func checkExportedService(id string, m *pbpeerstream.ExportedService) error {
	if m.GetName() != id {
		return fmt.Errorf("exported service %s under resource ID %s", shortID(m.GetName()), shortID(id))
	}
	if m.GetFull() && len(m.GetRemovedInstanceIds()) > 0 {
		return fmt.Errorf("exported service %s: a full resource has removed_instance_ids", shortID(id))
	}
	seen := map[string]bool{}
	for _, in := range m.GetInstances() {
		switch {
		case in.GetService() != id:
			return fmt.Errorf("exported service %s: instance of service %s", shortID(id), shortID(in.GetService()))
		case in.GetNodeName() == "" || strings.ContainsAny(in.GetNodeName(), "\x00/"):
			return fmt.Errorf("exported service %s: instance with node name %s", shortID(id), shortID(in.GetNodeName()))
		case in.GetServiceId() == "" || strings.ContainsRune(in.GetServiceId(), 0):
			return fmt.Errorf("exported service %s: instance on %s with service ID %s", shortID(id), shortID(in.GetNodeName()), shortID(in.GetServiceId()))
		case in.GetHealthStatus() < pbpeerstream.HealthStatus_HEALTH_STATUS_PASSING || in.GetHealthStatus() > pbpeerstream.HealthStatus_HEALTH_STATUS_MAINTENANCE:
			return fmt.Errorf("exported service %s: instance %s has health status %d", shortID(id), shortID(in.InstanceID()), in.GetHealthStatus())
		case in.GetPort() > 65535 || in.GetGatewayPort() > 65535:
			return fmt.Errorf("exported service %s: instance %s has a port above 65535", shortID(id), shortID(in.InstanceID()))
		}
		if seen[in.InstanceID()] {
			return fmt.Errorf("exported service %s: instance %s listed twice", shortID(id), shortID(in.InstanceID()))
		}
		seen[in.InstanceID()] = true
	}
	for _, rid := range m.GetRemovedInstanceIds() {
		node, sid, ok := strings.Cut(rid, "/")
		if !ok || node == "" || sid == "" {
			return fmt.Errorf("exported service %s: removed instance ID %s is not node/service-id", shortID(id), shortID(rid))
		}
	}
	if m.GetFull() && len(m.GetHealthUpdates()) > 0 {
		return fmt.Errorf("exported service %s: a full resource has health_updates", shortID(id))
	}
	for _, hu := range m.GetHealthUpdates() {
		iid := hu.GetInstanceId()
		node, sid, ok := strings.Cut(iid, "/")
		switch {
		case !ok || node == "" || sid == "" || strings.ContainsRune(iid, 0):
			return fmt.Errorf("exported service %s: health update for instance ID %s, not node/service-id", shortID(id), shortID(iid))
		case hu.GetHealthStatus() < pbpeerstream.HealthStatus_HEALTH_STATUS_PASSING || hu.GetHealthStatus() > pbpeerstream.HealthStatus_HEALTH_STATUS_MAINTENANCE:
			return fmt.Errorf("exported service %s: health update for instance %s has health status %d", shortID(id), shortID(iid), hu.GetHealthStatus())
		case seen[iid]:
			return fmt.Errorf("exported service %s: instance %s listed twice", shortID(id), shortID(iid))
		}
		seen[iid] = true
	}
	return nil
}

// apply decodes, plans and commits one resource.
func (im *importer) apply(ctx context.Context, r *pbpeerstream.Response, payload []byte) (codes.Code, error) {
	ss := im.sess
	s := ss.srv
	d, err := decodeResource(r, payload, ss.dialer)
	if err != nil {
		return codes.InvalidArgument, err
	}
	st := s.cfg.Cluster.Store()
	switch {
	case d.svc != nil:
		c, err := im.checks()
		if err != nil {
			return codes.Internal, err
		}
		stripped, err := validateService(d.svc, c)
		if err != nil {
			return refusalCode(err), err
		}
		im.strippedMeta(d.svc.GetName(), stripped)
	case d.list != nil:
		if err := im.checkListQuota(d.list.GetServices()); err != nil {
			return refusalCode(err), err
		}
	}
	switch {
	case d.bundle != nil:
		return im.applyBundle(ctx, d.bundle)
	case d.addrs != nil:
		addrs := d.addrs.GetAddresses()
		err := s.updatePeering(ctx, ss.id, func(p *state.Peering) bool {
			if slices.Equal(p.PeerServerAddresses, addrs) {
				return false
			}
			p.PeerServerAddresses = slices.Clone(addrs)
			return true
		})
		if err != nil {
			return codes.Internal, fmt.Errorf("store server addresses: %w", err)
		}
		return codes.OK, nil
	}
	plan, err := planImport(st, ss.name, ss.peerDC, r, d)
	if errors.Is(err, errUnknownInstance) {
		return codes.FailedPrecondition, err
	}
	if err != nil {
		return codes.Internal, err
	}
	delta, err := im.admitPlan(plan)
	if err != nil {
		return refusalCode(err), err
	}
	if err := im.commit(ctx, plan); err != nil {
		return codes.Internal, err
	}
	im.settle(delta)
	if r.GetResourceUrl() == pbpeerstream.TypeURLExportedServiceList {
		s.tracker.setImported(ss.id, d.list.GetServices())
	}
	return codes.OK, nil
}

func (im *importer) commit(ctx context.Context, plan *importPlan) error {
	if len(plan.registers) > 0 {
		im.writes++
		if _, err := im.sess.srv.apply(ctx, &catalog.Command{Type: catalog.CmdRegisterBatch, Registers: plan.registers}); err != nil {
			return fmt.Errorf("import %d instances: %w", len(plan.registers), err)
		}
	}
	if len(plan.deregisters) > 0 {
		im.writes++
		if _, err := im.sess.srv.apply(ctx, &catalog.Command{Type: catalog.CmdDeregisterBatch, Deregisters: plan.deregisters}); err != nil {
			return fmt.Errorf("remove %d imports: %w", len(plan.deregisters), err)
		}
	}
	return nil
}

// applyBundle stores the peer's trust bundle and copies its roots to the
// peering (so the dialer verifies the peer with its current CA).
func (im *importer) applyBundle(ctx context.Context, b *pbpeerstream.TrustBundle) (codes.Code, error) {
	ss := im.sess
	s := ss.srv
	st := s.cfg.Cluster.Store()
	_, row, err := st.PeeringByID(nil, ss.id)
	if err != nil || row == nil {
		return codes.Internal, fmt.Errorf("read the peering: %w", cmpErr(err, errDeletedLocally))
	}
	if err := s.checkBundleTrustDomain(st, ss.id, row.PeerTrustDomain, b); err != nil {
		return refusalCode(err), err
	}
	_, old, err := st.TrustBundle(nil, ss.name)
	if err != nil {
		return codes.Internal, err
	}
	if old == nil || old.TrustDomain != b.GetTrustDomain() || !slices.Equal(old.RootPEMs, b.GetRootPems()) || old.ExportedPartition != b.GetExportedPartition() {
		_, err := s.apply(ctx, &catalog.Command{Type: catalog.CmdTrustBundle, TrustBundle: &state.PeeringTrustBundle{
			PeerName: ss.name, TrustDomain: b.GetTrustDomain(), RootPEMs: slices.Clone(b.GetRootPems()), ExportedPartition: b.GetExportedPartition(),
		}})
		if err != nil {
			return codes.Internal, fmt.Errorf("store trust bundle: %w", err)
		}
	}
	err = s.updatePeering(ctx, ss.id, func(p *state.Peering) bool {
		if slices.Equal(p.PeerCAPems, b.GetRootPems()) && p.PeerTrustDomain == b.GetTrustDomain() {
			return false
		}
		p.PeerCAPems, p.PeerTrustDomain = slices.Clone(b.GetRootPems()), b.GetTrustDomain()
		return true
	})
	if err != nil {
		return codes.Internal, fmt.Errorf("store the peer's CA roots: %w", err)
	}
	if im.peerTD == "" {
		ss.log().Info("pinned the peer's trust domain", "trust_domain", b.GetTrustDomain())
	}
	im.peerTD = b.GetTrustDomain()
	return codes.OK, nil
}

// endSync ends the full sync of url: resources of that type outside the
// sync set are dropped ("no stale imports").
func (im *importer) endSync(ctx context.Context, url string) (codes.Code, error) {
	set := im.syncs[url]
	delete(im.syncs, url)
	ss := im.sess
	st := ss.srv.cfg.Cluster.Store()
	var plan *importPlan
	var err error
	switch url {
	case pbpeerstream.TypeURLExportedService:
		plan, err = planKeepOnly(st, ss.name, slices.Collect(maps.Keys(set)))
		ss.srv.held.keepOnly(ss.id, set)
	case pbpeerstream.TypeURLExportedServiceList:
		if set[pbpeerstream.ResourceIDExportedServiceList] {
			return codes.OK, nil
		}
		plan, err = planKeepOnly(st, ss.name, nil)
		ss.srv.tracker.setImported(ss.id, nil)
		ss.srv.held.forget(ss.id)
	default:
		return codes.OK, nil
	}
	if err != nil {
		return codes.Internal, err
	}
	delta, err := im.admitPlan(plan) // removals only: always admitted
	if err != nil {
		return codes.Internal, err
	}
	if err := im.commit(ctx, plan); err != nil {
		return codes.Internal, fmt.Errorf("drop stale imports: %w", err)
	}
	im.settle(delta)
	return codes.OK, nil
}

// strippedMeta counts and logs the reserved meta keys stripped from a
// service's instances.
func (im *importer) strippedMeta(service string, n int) {
	if n == 0 {
		return
	}
	ss := im.sess
	msg := fmt.Sprintf("exported service %s: %d meta keys with the reserved prefix %q stripped", shortID(service), n, state.ReservedMetaPrefix)
	ss.srv.metrics.importRefusals.WithLabelValues(ss.name, refuseReservedMeta).Add(float64(n))
	ss.srv.tracker.refused(ss.id, "", refuseReservedMeta, msg)
	ss.logRefusal("stripped reserved meta from an import", "service", service, "keys", n)
}

// cmpErr returns err, or def when err is nil.
func cmpErr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}
