package peering

import (
	"context"
	"errors"
	"maps"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

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
	st        *state.Store
	items     []*batchItem
	services  map[string]bool
	touched   map[string]bool
	registers []*state.RegisterRequest
	remove    map[string]bool
	bytes     int
	// delta is the import counts the batch leaves, admitted message by
	// message against the quotas; checks what instances are checked
	// against (read once per batch, with checksErr).
	delta     *countDelta
	checks    importChecks
	checksErr error
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
	b := &importBatch{
		im: im, st: im.sess.srv.cfg.Cluster.Store(),
		services: map[string]bool{}, touched: map[string]bool{}, remove: map[string]bool{},
		delta: newCountDelta(),
	}
	b.checks, b.checksErr = im.checks()
	if b.checksErr == nil {
		b.checksErr = im.loadCounts()
	}
	return b
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
	case b.checksErr != nil:
		it.code, it.err = codes.Internal, b.checksErr
	default:
		stripped, err := validateService(d.svc, b.checks)
		if err != nil {
			it.code, it.err = refusalCode(err), err
			break
		}
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
		if err := im.admit(b.delta, id, plan.counts[id]); err != nil {
			it.code, it.err = refusalCode(err), err
			break
		}
		im.strippedMeta(id, stripped)
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
		} else {
			im.settle(b.delta)
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
		im.record(r, r.GetResource(), it.err)
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
