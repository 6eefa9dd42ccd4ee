package peering

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

// Catalog conventions of imported services (defined in catalog, which the
// terminator and the DNS server read too). A node without GatewayPortMeta
// exports its instances with gateway_port 0.
const (
	GatewayPortMeta      = catalog.GatewayPortMeta
	MetaPeerSNI          = catalog.MetaPeerSNI
	MetaPeerSPIFFEIDs    = catalog.MetaPeerSPIFFEIDs
	MetaPeerProtocol     = catalog.MetaPeerProtocol
	TaggedAddressGateway = catalog.TaggedAddressGateway
	// importedCheckSuffix makes the one flattened check of an imported
	// instance: "<service ID>:overall-check", as Consul names it.
	importedCheckSuffix = ":overall-check"
)

// maxAssembledBytes bounds a resource reassembled from chunks.
const maxAssembledBytes = 256 << 20

// serverAddressPoll is how often the exporter re-reads the live servers
// (gossip membership has no watch).
const serverAddressPoll = time.Second

// maxPendingNonces bounds the responses awaiting an ACK per stream.
const maxPendingNonces = 1 << 16

// typeOrder is the order in which the exporter serves the resource types.
var typeOrder = []string{
	pbpeerstream.TypeURLExportedServiceList,
	pbpeerstream.TypeURLExportedService,
	pbpeerstream.TypeURLTrustBundle,
	pbpeerstream.TypeURLServerAddresses,
}

// ---- exporter ----

type ctlKind int

const (
	ctlSubscribe ctlKind = iota
	ctlACK
	ctlNACK
)

// ctlEvent is a subscription, ACK or NACK from the peer, handed from the
// receive loop to the exporter.
type ctlEvent struct {
	kind    ctlKind
	url     string
	nonce   string
	initial map[string]uint64
}

// exporter serves the peer's subscriptions on one stream. Watcher
// goroutines (one for the export list, one per exported service) keep
// snapshots; run diffs them against what was sent and sends the changes.
type exporter struct {
	sess  *session
	dirty chan struct{}

	ctlMu   sync.Mutex
	ctl     []ctlEvent
	ctlWake chan struct{}

	// Written by the watchers, read by run. names and nameSet are replaced,
	// never modified, so run may keep them; listGen counts the replacements.
	// changed holds the services whose snapshot was replaced since run last
	// took it.
	mu        sync.Mutex
	listReady bool
	names     []string
	nameSet   map[string]struct{}
	listGen   uint64
	slots     map[string]*snapSlot
	changed   map[string]struct{}
	watchErr  error

	// Owned by run.
	subs     map[string]*subState
	pending  map[string]sentRef
	versions map[string]uint64 // url + "\x00" + id -> last version sent
	services map[string]map[string][32]byte
	sentSnap map[string]*serviceSnap // the snapshot each service was last sent from
	singles  map[string][32]byte
	resend   map[string]bool
	seenGen  uint64 // the listGen run last synced
}

// snapSlot is one exported service's latest snapshot; owner is the
// watcher allowed to write it.
type snapSlot struct {
	owner uint64
	snap  *serviceSnap
}

// serviceSnap is an exported service's instances, sorted by instance ID,
// with a hash of each instance's wire form.
type serviceSnap struct {
	instances []*pbpeerstream.ServiceInstance
	hashes    map[string][32]byte
}

type subState struct {
	full    bool
	initial map[string]uint64
}

type sentRef struct {
	url, id string
	version uint64
}

func newExporter(sess *session) *exporter {
	return &exporter{
		sess: sess, dirty: make(chan struct{}, 1), ctlWake: make(chan struct{}, 1),
		slots: map[string]*snapSlot{}, changed: map[string]struct{}{}, subs: map[string]*subState{}, pending: map[string]sentRef{},
		versions: map[string]uint64{}, services: map[string]map[string][32]byte{}, sentSnap: map[string]*serviceSnap{},
		singles: map[string][32]byte{}, resend: map[string]bool{},
	}
}

// control queues an event from the peer; it never blocks.
func (e *exporter) control(ev ctlEvent) {
	e.ctlMu.Lock()
	e.ctl = append(e.ctl, ev)
	e.ctlMu.Unlock()
	signal(e.ctlWake)
}

func resKey(url, id string) string { return url + "\x00" + id }

func (e *exporter) run() {
	ss := e.sess
	ctx := ss.ctx
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.watchList(ctx)
	}()
	defer wg.Wait()
	tick := time.NewTicker(serverAddressPoll)
	defer tick.Stop()
	for {
		e.drainControl()
		ws := memdb.NewWatchSet()
		if err := e.sync(ctx, ws); err != nil {
			if ctx.Err() == nil {
				ss.fail(fmt.Errorf("export to %q: %w", ss.name, err))
			}
			return
		}
		wctx, wcancel := context.WithCancel(ctx)
		fired := ws.WatchCh(wctx)
		select {
		case <-ctx.Done():
		case <-e.ctlWake:
		case <-e.dirty:
		case <-fired:
		case <-tick.C:
		}
		wcancel()
		if ctx.Err() != nil {
			return
		}
	}
}

func (e *exporter) drainControl() {
	e.ctlMu.Lock()
	evs := e.ctl
	e.ctl = nil
	e.ctlMu.Unlock()
	for _, ev := range evs {
		switch ev.kind {
		case ctlSubscribe:
			e.subs[ev.url] = &subState{full: true, initial: ev.initial}
		case ctlACK, ctlNACK:
			ref, ok := e.pending[ev.nonce]
			if !ok || ref.url != ev.url {
				e.sess.srv.metrics.unknownNonces.WithLabelValues(e.sess.name).Inc()
				continue
			}
			delete(e.pending, ev.nonce)
			if ev.kind == ctlNACK && ref.version == e.versions[resKey(ref.url, ref.id)] {
				// Only a NACK of the latest version asks for a resend: the
				// other chunks of a refused resource are NACKed too.
				e.resend[resKey(ref.url, ref.id)] = true
			}
		}
	}
}

// sync sends whatever the subscribed types need. ws collects what the
// trust bundle was read from.
func (e *exporter) sync(ctx context.Context, ws memdb.WatchSet) error {
	// The changed set is taken before the snapshots are read: a snapshot
	// replaced in between is marked again and looked at next pass.
	e.mu.Lock()
	ready, names, nameSet, werr := e.listReady, e.names, e.nameSet, e.watchErr
	listChanged := e.listGen != e.seenGen
	e.seenGen = e.listGen
	changed := e.changed
	e.changed = map[string]struct{}{}
	e.mu.Unlock()
	if werr != nil {
		return werr
	}
	for _, url := range typeOrder {
		sub := e.subs[url]
		if sub == nil {
			continue
		}
		var err error
		switch url {
		case pbpeerstream.TypeURLExportedServiceList:
			if ready && (listChanged || sub.full || e.resend[resKey(url, pbpeerstream.ResourceIDExportedServiceList)]) {
				err = e.sendSingle(ctx, url, pbpeerstream.ResourceIDExportedServiceList, &pbpeerstream.ExportedServiceList{Services: names}, sub)
			}
		case pbpeerstream.TypeURLExportedService:
			if ready {
				err = e.syncServices(ctx, names, nameSet, changed, listChanged, sub)
			}
		case pbpeerstream.TypeURLTrustBundle:
			var b *pbpeerstream.TrustBundle
			if b, err = e.trustBundle(ws); err == nil && b != nil {
				err = e.sendSingle(ctx, url, pbpeerstream.ResourceIDTrustBundle, b, sub)
			}
		case pbpeerstream.TypeURLServerAddresses:
			if a := e.serverAddresses(); len(a.GetAddresses()) > 0 {
				err = e.sendSingle(ctx, url, pbpeerstream.ResourceIDServerAddresses, a, sub)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

var deterministic = proto.MarshalOptions{Deterministic: true}

// sendSingle sends a singleton resource when it changed, a full sync asks
// for it, or the peer refused it.
func (e *exporter) sendSingle(ctx context.Context, url, id string, m proto.Message, sub *subState) error {
	b, err := deterministic.Marshal(m)
	if err != nil {
		return fmt.Errorf("marshal %s: %w", id, err)
	}
	h := sha256.Sum256(b)
	key := resKey(url, id)
	prev, sent := e.singles[url]
	if !sub.full && !e.resend[key] && sent && prev == h {
		return nil
	}
	full := sub.full
	if err := e.emit(ctx, url, id, pbpeerstream.Operation_OPERATION_UPSERT, b, full, full); err != nil {
		return err
	}
	e.singles[url] = h
	delete(e.resend, key)
	sub.full = false
	if url == pbpeerstream.TypeURLExportedServiceList {
		e.sess.srv.tracker.setExported(e.sess.id, m.(*pbpeerstream.ExportedServiceList).GetServices())
	}
	return nil
}

// snapshots reads the latest snapshots of the named services.
func (e *exporter) snapshots(names []string) map[string]*serviceSnap {
	snaps := make(map[string]*serviceSnap, len(names))
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range names {
		if sl := e.slots[n]; sl != nil {
			snaps[n] = sl.snap
		}
	}
	return snaps
}

// syncServices sends every exported service in full during a full sync,
// and afterwards DELETEs for dropped services, full resources for new or
// refused ones and deltas for changed ones. Outside a full sync it looks
// only at the services whose snapshot changed (changed) and the refused
// ones, or at every service when the export list changed.
func (e *exporter) syncServices(ctx context.Context, names []string, nameSet, changed map[string]struct{}, listChanged bool, sub *subState) error {
	url := pbpeerstream.TypeURLExportedService
	if sub.full {
		snaps := e.snapshots(names)
		for _, n := range names {
			if snaps[n] == nil {
				return nil // not read yet: a watcher will wake us
			}
		}
		type item struct {
			id      string
			op      pbpeerstream.Operation
			payload []byte
		}
		var items []item
		e.services = map[string]map[string][32]byte{}
		clear(e.sentSnap)
		for _, n := range names {
			b, err := deterministic.Marshal(&pbpeerstream.ExportedService{Name: n, Instances: snaps[n].instances, Full: true})
			if err != nil {
				return fmt.Errorf("marshal service %q: %w", n, err)
			}
			items = append(items, item{n, pbpeerstream.Operation_OPERATION_UPSERT, b})
		}
		for _, id := range slices.Sorted(maps.Keys(sub.initial)) {
			if _, ok := nameSet[id]; !ok {
				items = append(items, item{id: id, op: pbpeerstream.Operation_OPERATION_DELETE})
			}
		}
		if len(items) == 0 {
			if err := e.emitMarker(ctx, url); err != nil {
				return err
			}
		}
		for i, it := range items {
			if err := e.emit(ctx, url, it.id, it.op, it.payload, true, i == len(items)-1); err != nil {
				return err
			}
			delete(e.resend, resKey(url, it.id))
		}
		for _, n := range names {
			e.services[n], e.sentSnap[n] = snaps[n].hashes, snaps[n]
		}
		sub.full = false
		return nil
	}
	var todo []string
	if listChanged {
		for _, n := range slices.Sorted(maps.Keys(e.services)) {
			if _, ok := nameSet[n]; !ok {
				if err := e.emit(ctx, url, n, pbpeerstream.Operation_OPERATION_DELETE, nil, false, false); err != nil {
					return err
				}
				delete(e.services, n)
				delete(e.sentSnap, n)
				delete(e.resend, resKey(url, n))
			}
		}
		todo = names
	} else {
		set := maps.Clone(changed)
		prefix := url + "\x00"
		for key := range e.resend {
			if n, ok := strings.CutPrefix(key, prefix); ok {
				set[n] = struct{}{}
			}
		}
		for n := range set {
			if _, ok := nameSet[n]; ok {
				todo = append(todo, n)
			}
		}
		slices.Sort(todo)
	}
	if len(todo) == 0 {
		return nil
	}
	snaps := e.snapshots(todo)
	for _, n := range todo {
		snap := snaps[n]
		if snap == nil {
			continue
		}
		key := resKey(url, n)
		if e.sentSnap[n] == snap && !e.resend[key] {
			continue // unchanged since sent
		}
		sent, ok := e.services[n]
		msg := &pbpeerstream.ExportedService{Name: n}
		if !ok || e.resend[key] {
			msg.Instances, msg.Full = snap.instances, true
		} else {
			prev := e.sentSnap[n]
			for _, in := range snap.instances {
				id := in.InstanceID()
				h, ok := sent[id]
				if ok && h == snap.hashes[id] {
					continue
				}
				if ok {
					if old := prev.find(id); old != nil && healthOnly(old, in) {
						msg.HealthUpdates = append(msg.HealthUpdates, &pbpeerstream.InstanceHealth{
							InstanceId: id, HealthStatus: in.GetHealthStatus(), HealthOutput: in.GetHealthOutput(),
						})
						continue
					}
				}
				msg.Instances = append(msg.Instances, in)
			}
			for _, id := range slices.Sorted(maps.Keys(sent)) {
				if _, ok := snap.hashes[id]; !ok {
					msg.RemovedInstanceIds = append(msg.RemovedInstanceIds, id)
				}
			}
			if len(msg.Instances) == 0 && len(msg.RemovedInstanceIds) == 0 && len(msg.HealthUpdates) == 0 {
				e.sentSnap[n] = snap
				continue
			}
		}
		b, err := deterministic.Marshal(msg)
		if err != nil {
			return fmt.Errorf("marshal service %q: %w", n, err)
		}
		if err := e.emit(ctx, url, n, pbpeerstream.Operation_OPERATION_UPSERT, b, false, false); err != nil {
			return err
		}
		e.services[n], e.sentSnap[n] = snap.hashes, snap
		delete(e.resend, key)
	}
	return nil
}

// find returns the snapshot's instance with the given ID, or nil.
func (s *serviceSnap) find(id string) *pbpeerstream.ServiceInstance {
	if s == nil {
		return nil
	}
	i, ok := slices.BinarySearchFunc(s.instances, id, func(in *pbpeerstream.ServiceInstance, id string) int {
		return strings.Compare(in.InstanceID(), id)
	})
	if !ok {
		return nil
	}
	return s.instances[i]
}

// healthOnly reports whether cur differs from old in its health alone.
func healthOnly(old, cur *pbpeerstream.ServiceInstance) bool {
	c := proto.Clone(cur).(*pbpeerstream.ServiceInstance)
	c.HealthStatus, c.HealthOutput = old.GetHealthStatus(), old.GetHealthOutput()
	return proto.Equal(c, old)
}

// emitMarker sends the sync_end marker of an empty full sync.
func (e *exporter) emitMarker(ctx context.Context, url string) error {
	return e.enqueue(ctx, &pbpeerstream.Response{ResourceUrl: url, FullSync: true, SyncEnd: true}, sentRef{url: url})
}

// emit sends one resource at the next version, in chunks if it does not
// fit in MaxMessageBytes.
func (e *exporter) emit(ctx context.Context, url, id string, op pbpeerstream.Operation, payload []byte, fullSync, syncEnd bool) error {
	key := resKey(url, id)
	e.versions[key]++
	version := e.versions[key]
	base := &pbpeerstream.Response{
		ResourceUrl: url, ResourceId: id, Version: version, Operation: op, FullSync: fullSync, SyncEnd: syncEnd,
	}
	ref := sentRef{url: url, id: id, version: version}
	limit := e.sess.srv.cfg.MaxMessageBytes
	// The envelope with the widest nonce and chunk fields, plus the
	// resource field's tag and length.
	probe := proto.Clone(base).(*pbpeerstream.Response)
	probe.Nonce, probe.ChunkIndex, probe.ChunkCount = "ffffffffffffffff", 1<<31, 1<<31
	overhead := proto.Size(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Response{Response: probe}}) + 16
	if len(payload)+overhead <= limit {
		r := proto.Clone(base).(*pbpeerstream.Response)
		r.Resource = payload
		return e.enqueue(ctx, r, ref)
	}
	per := limit - overhead
	if per < 256 {
		return fmt.Errorf("resource %q: max message size %d leaves no room for chunks", id, limit)
	}
	n := (len(payload) + per - 1) / per
	for i := range n {
		r := proto.Clone(base).(*pbpeerstream.Response)
		r.ChunkIndex, r.ChunkCount = uint32(i), uint32(n)
		r.SyncEnd = syncEnd && i == n-1
		r.Resource = payload[i*per : min(len(payload), (i+1)*per)]
		if err := e.enqueue(ctx, r, ref); err != nil {
			return err
		}
	}
	return nil
}

func (e *exporter) enqueue(ctx context.Context, r *pbpeerstream.Response, ref sentRef) error {
	if err := e.sess.out.waitRoom(ctx, 2*e.sess.srv.cfg.MaxMessageBytes); err != nil {
		return err
	}
	r.Nonce = e.sess.nextNonce()
	if len(e.pending) >= maxPendingNonces {
		// The peer is not acknowledging; forget the oldest state rather
		// than grow without bound (late ACKs are then counted as unknown).
		clear(e.pending)
	}
	if ref.id != "" {
		e.pending[r.Nonce] = ref
	}
	e.sess.out.push(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Response{Response: r}}, false)
	return nil
}

// trustBundle is this cluster's CA roots, the active one first; nil until
// the CA exists.
func (e *exporter) trustBundle(ws memdb.WatchSet) (*pbpeerstream.TrustBundle, error) {
	_, roots, err := e.sess.srv.cfg.Cluster.Store().CARoots(ws)
	if err != nil {
		return nil, err
	}
	if len(roots) == 0 || !roots[0].Active {
		return nil, nil
	}
	b := &pbpeerstream.TrustBundle{TrustDomain: roots[0].TrustDomain}
	for _, r := range roots {
		b.RootPems = append(b.RootPems, r.CertPEM)
	}
	return b, nil
}

// serverAddresses are the TLS gRPC addresses of the live servers.
func (e *exporter) serverAddresses() *pbpeerstream.ServerAddresses {
	var addrs []string
	for _, m := range e.sess.srv.cfg.Cluster.Servers() {
		if m.Meta.GRPCTLSAddr != "" {
			addrs = append(addrs, m.Meta.GRPCTLSAddr)
		}
	}
	slices.Sort(addrs)
	return &pbpeerstream.ServerAddresses{Addresses: slices.Compact(addrs)}
}

// watchList follows the services exported to the peer and runs one
// watcher per service.
func (e *exporter) watchList(ctx context.Context) {
	ss := e.sess
	st := ss.srv.cfg.Cluster.Store()
	type watcher struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	watchers := map[string]watcher{}
	defer func() {
		for _, w := range watchers {
			w.cancel()
			<-w.done
		}
	}()
	var owner uint64
	for {
		ws := memdb.NewWatchSet()
		_, list, err := exportedServices(ws, st)
		if err != nil {
			e.setErr(err)
			return
		}
		names := exportedTo(list, ss.name)
		nameSet := make(map[string]struct{}, len(names))
		for _, n := range names {
			nameSet[n] = struct{}{}
		}
		e.mu.Lock()
		if !e.listReady || !slices.Equal(names, e.names) {
			e.listGen++
		}
		e.names, e.nameSet, e.listReady = names, nameSet, true
		for n := range e.slots {
			if _, ok := nameSet[n]; !ok {
				delete(e.slots, n)
			}
		}
		var added []string
		for _, n := range names {
			if _, ok := e.slots[n]; !ok {
				owner++
				e.slots[n] = &snapSlot{owner: owner}
				added = append(added, n)
			}
		}
		owners := map[string]uint64{}
		for _, n := range added {
			owners[n] = e.slots[n].owner
		}
		e.mu.Unlock()
		for n, w := range watchers {
			if _, ok := nameSet[n]; !ok {
				w.cancel()
				<-w.done
				delete(watchers, n)
			}
		}
		for _, n := range added {
			wctx, cancel := context.WithCancel(ctx)
			w := watcher{cancel: cancel, done: make(chan struct{})}
			watchers[n] = w
			go func() {
				defer close(w.done)
				e.watchService(wctx, n, owners[n])
			}()
		}
		signal(e.dirty)
		if err := ws.WatchCtx(ctx); err != nil {
			return
		}
	}
}

func (e *exporter) setErr(err error) {
	e.mu.Lock()
	if e.watchErr == nil {
		e.watchErr = err
	}
	e.mu.Unlock()
	signal(e.dirty)
}

// watchService keeps one exported service's snapshot current.
func (e *exporter) watchService(ctx context.Context, name string, owner uint64) {
	for {
		ws := memdb.NewWatchSet()
		snap, err := e.buildService(ws, name)
		if err != nil {
			e.setErr(err)
			return
		}
		e.mu.Lock()
		if sl := e.slots[name]; sl != nil && sl.owner == owner {
			sl.snap = snap
			e.changed[name] = struct{}{}
		}
		e.mu.Unlock()
		signal(e.dirty)
		if err := ws.WatchCtx(ctx); err != nil {
			return
		}
	}
}

// buildService reads one service's instances in their wire form.
func (e *exporter) buildService(ws memdb.WatchSet, name string) (*serviceSnap, error) {
	s := e.sess.srv
	st := s.cfg.Cluster.Store()
	_, csns, err := st.CheckServiceNodes(ws, "", name)
	if err != nil {
		return nil, fmt.Errorf("read instances of %q: %w", name, err)
	}
	protocol, err := st.ServiceProtocol(ws, name)
	if err != nil {
		return nil, err
	}
	td, err := s.trustDomain()
	if err != nil {
		return nil, err
	}
	snap := &serviceSnap{hashes: map[string][32]byte{}}
	for _, csn := range csns {
		if csn.Service == nil || csn.Node == nil || csn.Service.Kind != "" {
			continue
		}
		in := exportInstance(csn, protocol, td, s.datacenter(), e.sess.name)
		b, err := deterministic.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("marshal instance %s: %w", in.InstanceID(), err)
		}
		snap.instances = append(snap.instances, in)
		snap.hashes[in.InstanceID()] = sha256.Sum256(b)
	}
	sort.Slice(snap.instances, func(i, j int) bool { return snap.instances[i].InstanceID() < snap.instances[j].InstanceID() })
	return snap, nil
}

// exportInstance builds the wire form of one local instance for peer.
func exportInstance(csn catalog.CheckServiceNode, protocol string, td spiffeid.TrustDomain, dc, peer string) *pbpeerstream.ServiceInstance {
	n, svc := csn.Node, csn.Service
	health, output := flattenHealth(csn.Checks)
	in := &pbpeerstream.ServiceInstance{
		NodeName: n.Node, NodeAddress: n.Address, NodeId: n.ID,
		ServiceId: svc.ID, Service: svc.Service, Tags: slices.Clone(svc.Tags),
		Address: svc.Address, Port: uint32(max(svc.Port, 0)), Meta: maps.Clone(svc.Meta),
		WeightsPassing: int32(svc.Weights.Passing), WeightsWarning: int32(svc.Weights.Warning),
		HealthStatus: health, HealthOutput: output,
		Sni:            identity.PeeredSNI(svc.Service, identity.DefaultNamespace, identity.DefaultPartition, peer, td),
		Protocol:       protocol,
		GatewayAddress: n.Address,
	}
	if id, err := identity.ServiceID(td, identity.DefaultNamespace, dc, svc.Service); err == nil {
		in.SpiffeIds = append(in.SpiffeIds, id.String())
	}
	if id, err := identity.GatewayID(td, dc); err == nil {
		in.SpiffeIds = append(in.SpiffeIds, id.String())
	}
	if p, err := strconv.ParseUint(n.Meta[GatewayPortMeta], 10, 16); err == nil {
		in.GatewayPort = uint32(p)
	}
	return in
}

// flattenHealth folds an instance's checks (its node's and its own) into
// one status, as Consul's flattenChecks does: maintenance wins, then the
// worst of critical, warning, passing. The output is the deciding check's.
func flattenHealth(checks []*catalog.HealthCheck) (pbpeerstream.HealthStatus, string) {
	rank := map[string]int{catalog.HealthPassing: 1, catalog.HealthWarning: 2, catalog.HealthCritical: 3, catalog.HealthMaint: 4}
	worst, output := pbpeerstream.HealthStatus_HEALTH_STATUS_PASSING, ""
	best := 0
	for _, c := range checks {
		r, ok := rank[c.Status]
		if !ok {
			r = rank[catalog.HealthCritical]
		}
		if r > best {
			best, output = r, c.Output
			worst = pbpeerstream.HealthStatus(r)
		}
	}
	return worst, output
}

// ---- importer ----

// importer applies the peer's responses to the local catalog: one raft
// write per response (two when it both adds and removes instances), or per
// batch of queued service upserts (see importBatch). It is used by the
// receive loop only.
type importer struct {
	sess     *session
	chunks   map[string]*chunkBuf
	syncs    map[string]map[string]bool
	versions map[string]uint64
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

func newImporter(sess *session) *importer {
	return &importer{sess: sess, chunks: map[string]*chunkBuf{}, syncs: map[string]map[string]bool{}, versions: map[string]uint64{}}
}

// subscribed starts tracking the full sync of url.
func (im *importer) subscribed(url string) { im.syncs[url] = map[string]bool{} }

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
		return codes.InvalidArgument, err
	}
	if !complete {
		return codes.OK, nil // a chunk: ACKed, applied with the last one
	}
	if r.GetVersion() < im.versions[key] {
		return codes.OK, nil // stale: a newer version was applied
	}
	code, err := im.apply(ctx, r, payload)
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
		buf = &chunkBuf{version: r.GetVersion(), count: r.GetChunkCount(), first: arrived}
		im.chunks[key] = buf
	case buf == nil || buf.version != r.GetVersion() || buf.count != r.GetChunkCount() || buf.next != r.GetChunkIndex():
		delete(im.chunks, key)
		return nil, time.Time{}, false, fmt.Errorf("resource %s: chunk %d of %d out of order", shortID(r.GetResourceId()), r.GetChunkIndex(), r.GetChunkCount())
	}
	if len(buf.buf)+len(r.GetResource()) > maxAssembledBytes {
		delete(im.chunks, key)
		return nil, time.Time{}, false, fmt.Errorf("resource %s: chunks exceed %d bytes", shortID(r.GetResourceId()), maxAssembledBytes)
	}
	buf.buf = append(buf.buf, r.GetResource()...)
	buf.next++
	if buf.next < buf.count {
		return nil, time.Time{}, false, nil
	}
	delete(im.chunks, key)
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
	case len(n) > 512:
		return fmt.Errorf("service name %s is longer than 512 bytes", shortID(n))
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

// errUnknownInstance refuses a health update for an instance that is not
// imported; the NACK makes the exporter resend the service in full.
var errUnknownInstance = errors.New("health update for an instance that is not imported")

// importPlan is the catalog writes for one response.
type importPlan struct {
	registers   []*catalog.RegisterRequest
	deregisters []*catalog.DeregisterRequest
}

// planImport computes the writes that apply d for peer, reading the
// current imports from st (nothing is written).
// dc is the peer's datacenter, given to the imported nodes.
func planImport(st *catalog.Store, peer, dc string, r *pbpeerstream.Response, d *decodedResource) (*importPlan, error) {
	switch {
	case r.GetResourceUrl() == pbpeerstream.TypeURLExportedService:
		return planService(st, peer, dc, r.GetResourceId(), d)
	case d.list != nil || (r.GetResourceUrl() == pbpeerstream.TypeURLExportedServiceList && d.op == pbpeerstream.Operation_OPERATION_DELETE):
		return planKeepOnly(st, peer, d.list.GetServices())
	}
	return &importPlan{}, nil
}

// planService plans an ExportedService upsert (full or delta) or DELETE.
func planService(st *catalog.Store, peer, dc, name string, d *decodedResource) (*importPlan, error) {
	plan, remove, err := planServiceWrites(st, peer, dc, name, d)
	if err != nil {
		return nil, err
	}
	return plan, addRemovals(st, peer, plan, remove)
}

// planServiceWrites plans the registrations of an ExportedService upsert or
// DELETE and returns the instances (node/service-id) it removes; addRemovals
// turns those into deregistrations.
func planServiceWrites(st *catalog.Store, peer, dc, name string, d *decodedResource) (*importPlan, map[string]bool, error) {
	_, existing, err := st.CheckServiceNodes(nil, peer, name)
	if err != nil {
		return nil, nil, fmt.Errorf("read imported %q: %w", name, err)
	}
	have := map[string]catalog.CheckServiceNode{}
	for _, csn := range existing {
		have[csn.Node.Node+"/"+csn.Service.ID] = csn
	}
	plan := &importPlan{}
	remove := map[string]bool{}
	switch {
	case d.op == pbpeerstream.Operation_OPERATION_DELETE:
		for id := range have {
			remove[id] = true
		}
	case d.svc.GetFull():
		keep := map[string]bool{}
		for _, in := range d.svc.GetInstances() {
			keep[in.InstanceID()] = true
		}
		for id := range have {
			if !keep[id] {
				remove[id] = true
			}
		}
	default:
		for _, id := range d.svc.GetRemovedInstanceIds() {
			if _, ok := have[id]; ok {
				remove[id] = true
			}
		}
	}
	for _, in := range d.svc.GetInstances() {
		req := importRequest(peer, dc, in)
		if old, ok := have[in.InstanceID()]; ok && sameImport(old, req) {
			continue
		}
		plan.registers = append(plan.registers, req)
	}
	for _, hu := range d.svc.GetHealthUpdates() {
		old, ok := have[hu.GetInstanceId()]
		if !ok || remove[hu.GetInstanceId()] {
			return nil, nil, fmt.Errorf("exported service %s: instance %s: %w", shortID(name), shortID(hu.GetInstanceId()), errUnknownInstance)
		}
		req := healthRequest(peer, old, hu)
		if sameImport(old, req) {
			continue
		}
		plan.registers = append(plan.registers, req)
	}
	return plan, remove, nil
}

// planKeepOnly removes every imported service of peer not in keep.
func planKeepOnly(st *catalog.Store, peer string, keep []string) (*importPlan, error) {
	_, svcs, err := st.Services(nil, peer)
	if err != nil {
		return nil, fmt.Errorf("list services imported from %q: %w", peer, err)
	}
	keepSet := make(map[string]struct{}, len(keep))
	for _, n := range keep {
		keepSet[n] = struct{}{}
	}
	remove := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(svcs)) {
		if _, ok := keepSet[name]; ok {
			continue
		}
		_, sns, err := st.ServiceNodes(nil, peer, name)
		if err != nil {
			return nil, fmt.Errorf("read imported %q: %w", name, err)
		}
		for _, sn := range sns {
			remove[sn.Node.Node+"/"+sn.Service.ID] = true
		}
	}
	plan := &importPlan{}
	return plan, addRemovals(st, peer, plan, remove)
}

// addRemovals deregisters the instances (node/service-id) and then every
// node left without services.
func addRemovals(st *catalog.Store, peer string, plan *importPlan, remove map[string]bool) error {
	if len(remove) == 0 {
		return nil
	}
	byNode := map[string]map[string]bool{}
	for _, id := range slices.Sorted(maps.Keys(remove)) {
		node, sid, _ := strings.Cut(id, "/")
		plan.deregisters = append(plan.deregisters, &catalog.DeregisterRequest{Node: node, ServiceID: sid, PeerName: peer})
		if byNode[node] == nil {
			byNode[node] = map[string]bool{}
		}
		byNode[node][sid] = true
	}
	added := map[string]bool{}
	for _, r := range plan.registers {
		added[r.Node.Node] = true
	}
	for _, node := range slices.Sorted(maps.Keys(byNode)) {
		if added[node] {
			continue
		}
		_, svcs, err := st.NodeServices(nil, peer, node)
		if err != nil {
			return fmt.Errorf("read imported node %q: %w", node, err)
		}
		left := false
		for _, s := range svcs {
			if !byNode[node][s.ID] {
				left = true
			}
		}
		if !left {
			plan.deregisters = append(plan.deregisters, &catalog.DeregisterRequest{Node: node, PeerName: peer})
		}
	}
	return nil
}

var healthStatuses = map[pbpeerstream.HealthStatus]string{
	pbpeerstream.HealthStatus_HEALTH_STATUS_PASSING:     catalog.HealthPassing,
	pbpeerstream.HealthStatus_HEALTH_STATUS_WARNING:     catalog.HealthWarning,
	pbpeerstream.HealthStatus_HEALTH_STATUS_CRITICAL:    catalog.HealthCritical,
	pbpeerstream.HealthStatus_HEALTH_STATUS_MAINTENANCE: catalog.HealthMaint,
}

// importRequest is the registration of one imported instance: its node,
// the service (carrying the gateway, SNI, SPIFFE IDs and protocol) and one
// flattened check. dc is the peer's datacenter, the node's.
func importRequest(peer, dc string, in *pbpeerstream.ServiceInstance) *catalog.RegisterRequest {
	meta := maps.Clone(in.GetMeta())
	if meta == nil {
		meta = map[string]string{}
	}
	meta[MetaPeerSNI] = in.GetSni()
	meta[MetaPeerSPIFFEIDs] = strings.Join(in.GetSpiffeIds(), ",")
	meta[MetaPeerProtocol] = in.GetProtocol()
	svc := &catalog.Service{
		ID: in.GetServiceId(), Service: in.GetService(), Tags: slices.Clone(in.GetTags()),
		Address: in.GetAddress(), Port: int(in.GetPort()), Meta: meta,
		Weights:  catalog.Weights{Passing: int(in.GetWeightsPassing()), Warning: int(in.GetWeightsWarning())},
		PeerName: peer,
		TaggedAddresses: map[string]catalog.ServiceAddress{
			TaggedAddressGateway: {Address: in.GetGatewayAddress(), Port: int(in.GetGatewayPort())},
		},
	}
	if svc.Tags == nil {
		svc.Tags = []string{}
	}
	return &catalog.RegisterRequest{
		PeerName: peer,
		Node:     &catalog.Node{ID: in.GetNodeId(), Node: in.GetNodeName(), Address: in.GetNodeAddress(), Datacenter: dc, PeerName: peer},
		Service:  svc,
		Checks:   []*catalog.HealthCheck{importedCheck(peer, in.GetNodeName(), svc, in.GetHealthStatus(), in.GetHealthOutput())},
	}
}

// importedCheck is the one flattened check of an imported instance.
func importedCheck(peer, node string, svc *catalog.Service, status pbpeerstream.HealthStatus, output string) *catalog.HealthCheck {
	return &catalog.HealthCheck{
		Node: node, CheckID: svc.ID + importedCheckSuffix, Name: "Health of the peer's instance",
		Status: healthStatuses[status], Output: output,
		ServiceID: svc.ID, ServiceName: svc.Service, Type: "peering", PeerName: peer,
	}
}

// healthRequest re-registers an imported instance as it is (old) with the
// health of a health update.
func healthRequest(peer string, old catalog.CheckServiceNode, hu *pbpeerstream.InstanceHealth) *catalog.RegisterRequest {
	n, s := old.Node, old.Service
	svc := &catalog.Service{
		ID: s.ID, Service: s.Service, Tags: slices.Clone(s.Tags),
		Address: s.Address, Port: s.Port, Meta: maps.Clone(s.Meta),
		Weights: s.Weights, PeerName: peer, TaggedAddresses: maps.Clone(s.TaggedAddresses),
	}
	if svc.Tags == nil {
		svc.Tags = []string{}
	}
	return &catalog.RegisterRequest{
		PeerName: peer,
		Node:     &catalog.Node{ID: n.ID, Node: n.Node, Address: n.Address, Datacenter: n.Datacenter, PeerName: peer},
		Service:  svc,
		Checks:   []*catalog.HealthCheck{importedCheck(peer, n.Node, svc, hu.GetHealthStatus(), hu.GetHealthOutput())},
	}
}

// sameImport reports whether an imported instance already matches req.
func sameImport(old catalog.CheckServiceNode, req *catalog.RegisterRequest) bool {
	n, s := old.Node, old.Service
	if n.ID != req.Node.ID || n.Address != req.Node.Address || n.Datacenter != req.Node.Datacenter {
		return false
	}
	r := req.Service
	if s.Service != r.Service || s.Address != r.Address || s.Port != r.Port || s.Weights != r.Weights ||
		!slices.Equal(s.Tags, r.Tags) || !maps.Equal(s.Meta, r.Meta) || !maps.Equal(s.TaggedAddresses, r.TaggedAddresses) {
		return false
	}
	want := req.Checks[0]
	for _, c := range old.Checks {
		if c.CheckID == want.CheckID {
			return c.Status == want.Status && c.Output == want.Output && len(old.Checks) == 1
		}
	}
	return false
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
	case d.bundle != nil:
		return im.applyBundle(ctx, d.bundle)
	case d.addrs != nil:
		addrs := d.addrs.GetAddresses()
		err := s.updatePeering(ctx, ss.id, func(p *catalog.Peering) bool {
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
	if err := im.commit(ctx, plan); err != nil {
		return codes.Internal, err
	}
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
	_, old, err := s.cfg.Cluster.Store().TrustBundle(nil, ss.name)
	if err != nil {
		return codes.Internal, err
	}
	if old == nil || old.TrustDomain != b.GetTrustDomain() || !slices.Equal(old.RootPEMs, b.GetRootPems()) || old.ExportedPartition != b.GetExportedPartition() {
		_, err := s.apply(ctx, &catalog.Command{Type: catalog.CmdTrustBundle, TrustBundle: &catalog.PeeringTrustBundle{
			PeerName: ss.name, TrustDomain: b.GetTrustDomain(), RootPEMs: slices.Clone(b.GetRootPems()), ExportedPartition: b.GetExportedPartition(),
		}})
		if err != nil {
			return codes.Internal, fmt.Errorf("store trust bundle: %w", err)
		}
	}
	err = s.updatePeering(ctx, ss.id, func(p *catalog.Peering) bool {
		if slices.Equal(p.PeerCAPems, b.GetRootPems()) && p.PeerTrustDomain == b.GetTrustDomain() {
			return false
		}
		p.PeerCAPems, p.PeerTrustDomain = slices.Clone(b.GetRootPems()), b.GetTrustDomain()
		return true
	})
	if err != nil {
		return codes.Internal, fmt.Errorf("store the peer's CA roots: %w", err)
	}
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
	case pbpeerstream.TypeURLExportedServiceList:
		if set[pbpeerstream.ResourceIDExportedServiceList] {
			return codes.OK, nil
		}
		plan, err = planKeepOnly(st, ss.name, nil)
		ss.srv.tracker.setImported(ss.id, nil)
	default:
		return codes.OK, nil
	}
	if err != nil {
		return codes.Internal, err
	}
	if err := im.commit(ctx, plan); err != nil {
		return codes.Internal, fmt.Errorf("drop stale imports: %w", err)
	}
	return codes.OK, nil
}

// Bounds of an import batch, keeping raft entries reasonable. A batch
// stops taking messages once it holds maxBatchRegisters registrations: the
// FSM's memdb commit gets slower per write on larger transactions (past
// its cache of modified nodes it walks the trees to notify watchers), so
// 10,000 services of 10 instances import faster in batches of ~100
// messages than of 256.
const (
	maxBatchMessages  = 256
	maxBatchBytes     = 4 << 20
	maxBatchRegisters = 1024
)

// batchable reports whether m is a valid, whole ExportedService upsert
// that may share a commit with the ones queued around it. Everything else
// (lists, bundles, addresses, DELETEs, chunks, sync markers and sync_end)
// is handled alone and ends a batch.
func batchable(m *pbpeerstream.ReplicationMessage) bool {
	r := m.GetResponse()
	return r != nil && r.GetResourceUrl() == pbpeerstream.TypeURLExportedService && r.GetResourceId() != "" &&
		r.GetOperation() == pbpeerstream.Operation_OPERATION_UPSERT && !r.GetSyncEnd() && r.GetChunkCount() == 0 &&
		m.Validate() == nil
}

// importBatch is queued service upserts planned against the catalog as it
// is, to be committed in one write: the registrations of all of them in
// message order, then the removals. A service appears at most once, and no
// two messages touch the same instance, so each plans as it would after
// the earlier ones were applied.
type importBatch struct {
	im        *importer
	st        *catalog.Store
	items     []*batchItem
	services  map[string]bool
	touched   map[string]bool
	registers []*catalog.RegisterRequest
	remove    map[string]bool
	bytes     int
}

// batchItem is one message of a batch and its outcome.
type batchItem struct {
	r       *pbpeerstream.Response
	start   time.Time
	stale   bool
	planned bool
	code    codes.Code
	err     error
}

func (im *importer) newBatch() *importBatch {
	return &importBatch{
		im: im, st: im.sess.srv.cfg.Cluster.Store(),
		services: map[string]bool{}, touched: map[string]bool{}, remove: map[string]bool{},
	}
}

// full reports whether the batch takes no more messages.
func (b *importBatch) full() bool {
	return len(b.items) >= maxBatchMessages || b.bytes >= maxBatchBytes || len(b.registers) >= maxBatchRegisters
}

// add decodes and plans a batchable response into the batch. A message that
// fails to decode or plan joins the batch only to be NACKed. It returns
// false, adding nothing, when r must wait for the batch to be committed: its
// service or one of its instances is in the batch already, or it would
// make the batch too large. An empty batch takes any message.
func (b *importBatch) add(r *pbpeerstream.Response, arrived time.Time) bool {
	im := b.im
	id := r.GetResourceId()
	if len(b.items) > 0 && (b.services[id] || b.bytes+len(r.GetResource()) > maxBatchBytes) {
		return false
	}
	it := &batchItem{r: r, start: arrived}
	switch d, err := decodeResource(r, r.GetResource(), im.sess.dialer); {
	case r.GetVersion() < im.versions[resKey(r.GetResourceUrl(), id)]:
		it.stale = true // a newer version was applied: ACKed
	case err != nil:
		it.code, it.err = codes.InvalidArgument, err
	default:
		plan, remove, err := planServiceWrites(b.st, im.sess.name, im.sess.peerDC, id, d)
		if errors.Is(err, errUnknownInstance) {
			it.code, it.err = codes.FailedPrecondition, err
			break
		}
		if err != nil {
			it.code, it.err = codes.Internal, err
			break
		}
		ids := make([]string, 0, len(plan.registers)+len(remove))
		for _, req := range plan.registers {
			ids = append(ids, req.Node.Node+"/"+req.Service.ID)
		}
		for iid := range remove {
			ids = append(ids, iid)
		}
		if len(b.items) > 0 {
			for _, iid := range ids {
				if b.touched[iid] {
					return false
				}
			}
		}
		for _, iid := range ids {
			b.touched[iid] = true
		}
		maps.Copy(b.remove, remove)
		b.registers = append(b.registers, plan.registers...)
		b.bytes += len(r.GetResource())
		it.planned = true
	}
	b.services[id] = true
	b.items = append(b.items, it)
	return true
}

// commitBatch commits the batch in one write (two when it also removes
// instances) and does each message's bookkeeping. It returns the items in
// message order, with the error to NACK each with.
func (im *importer) commitBatch(ctx context.Context, b *importBatch) []*batchItem {
	ss := im.sess
	if len(b.registers) > 0 || len(b.remove) > 0 {
		plan := &importPlan{registers: b.registers}
		err := addRemovals(b.st, ss.name, plan, b.remove)
		if err == nil {
			err = im.commit(ctx, plan)
		}
		if err != nil {
			for _, it := range b.items {
				if it.planned {
					it.code, it.err = codes.Internal, err
				}
			}
		}
	}
	url := pbpeerstream.TypeURLExportedService
	for _, it := range b.items {
		r := it.r
		if r.GetFullSync() && im.syncs[url] == nil {
			im.syncs[url] = map[string]bool{} // a sync we did not ask for
		}
		if it.stale {
			continue
		}
		if set := im.syncs[url]; r.GetFullSync() && set != nil {
			set[r.GetResourceId()] = true // an upsert; a refused one keeps what we had
		}
		if it.err == nil {
			im.versions[resKey(url, r.GetResourceId())] = r.GetVersion()
			lag := ss.srv.cfg.Now().Sub(it.start)
			ss.srv.metrics.lag.WithLabelValues(ss.name).Observe(lag.Seconds())
			ss.srv.tracker.lag(ss.id, lag)
		}
	}
	return b.items
}
