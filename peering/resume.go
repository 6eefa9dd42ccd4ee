package peering

import (
	"crypto/sha256"
	"encoding/binary"
	"maps"
	"sync"
)

// A resubscription resumes from what the importer holds instead of
// resyncing every service. The importer remembers, per peering, a digest
// of each exported service's last applied upsert (the exact bytes the
// exporter sent); on the next stream it subscribes to exported services
// with those digests as the request's initial_versions. In its full sync
// the exporter leaves out every service whose full form has the digest
// the importer declared (it holds that already), sends the others whole,
// and DELETEs the declared ones it no longer exports; the importer counts
// the declared ones as received, so the sync's end keeps them. A service
// changed by a delta since its last full form has no digest and is resent.
// The digests live on the leader only and are dropped when leadership
// changes, the peering is deleted, or a sync ends without the service.

// payloadDigest is the digest of a resource's wire form carried in
// initial_versions (the first 8 bytes of its SHA-256; never 0).
func payloadDigest(b []byte) uint64 {
	sum := sha256.Sum256(b)
	return max(binary.BigEndian.Uint64(sum[:8]), 1)
}

// heldDigests is, per peering ID, the digest of each exported service the
// importer last applied an upsert of.
type heldDigests struct {
	mu   sync.Mutex
	byID map[string]map[string]uint64
}

func newHeldDigests() *heldDigests { return &heldDigests{byID: map[string]map[string]uint64{}} }

// get returns a copy of the peering's digests (nil if none).
func (h *heldDigests) get(peering string) map[string]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.byID[peering]) == 0 {
		return nil
	}
	return maps.Clone(h.byID[peering])
}

func (h *heldDigests) set(peering, service string, d uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.byID[peering]
	if m == nil {
		m = map[string]uint64{}
		h.byID[peering] = m
	}
	m[service] = d
}

func (h *heldDigests) drop(peering, service string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.byID[peering], service)
}

// keepOnly drops the peering's digests of the services not in keep.
func (h *heldDigests) keepOnly(peering string, keep map[string]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	maps.DeleteFunc(h.byID[peering], func(id string, _ uint64) bool { return !keep[id] })
}

func (h *heldDigests) forget(peering string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.byID, peering)
}

func (h *heldDigests) clear() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.byID)
}
