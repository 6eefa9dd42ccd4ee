package peering

import (
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	"github.com/peerd/peerd/peering/pbpeerstream"
)

// maxPendingNonces bounds the responses awaiting an ACK per stream.
const maxPendingNonces = 1 << 16

// typeOrder is the order in which the exporter serves the resource types:
// the trust bundle first, as the importer checks the SNI and SPIFFE IDs of
// services against the trust domain it pins from it.
var typeOrder = []string{
	pbpeerstream.TypeURLTrustBundle,
	pbpeerstream.TypeURLExportedServiceList,
	pbpeerstream.TypeURLExportedService,
	pbpeerstream.TypeURLServerAddresses,
}

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
	members := ss.srv.cfg.Cluster.MemberEvents(ctx) // the live servers' addresses
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
		case _, ok := <-members:
			if !ok {
				members = nil // the cluster member shut down
			}
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
			if d, ok := sub.initial[n]; ok && d == payloadDigest(b) {
				continue // the importer holds this very form (resume.go)
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
