//go:build linux

package dataplane

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/peerd/peerd/bpf"
)

// Sync makes the maps of the loaded layers equal to want, comparing
// against what the maps hold, not against what an earlier Sync wrote: run
// after a restart, it deletes the entries whose catalog rows went away
// while the daemon was down. Sync owns these maps: an entry put with
// SetVIP, SetPeerAddr or SetFastPathPorts that want lacks goes too. Layers
// that are not loaded are skipped.
//
// In order: the peer-id registry (see "Peer ids" in sync.go: released
// peers' entries deleted, new peers numbered), the capture layer's VIPs
// (every port of each VIP, recorded under the peer's id and the service's
// serviceID), the TC layer's peer addresses, the counters of released
// peers and of ids nobody holds (deleted once no address maps to them),
// and the fast path's ports. A map that cannot be brought in line (a full
// map, say) does not stop the others; the error is a *SyncError naming
// each failed map. Without a readable registry, VIPs and peer addresses
// are left as they are.
func (d *Dataplane) Sync(want Desired) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("sync the dataplane: dataplane closed")
	}
	var serr SyncError
	if d.capture != nil || d.tc != nil {
		plan, err := d.syncPeerIDs(want.wantedPeers())
		serr.add(SyncPeerIDs, err)
		if plan != nil {
			for name, rerr := range plan.refused {
				serr.add(SyncPeerIDs, fmt.Errorf("%s: %w", name, rerr))
			}
			if d.capture != nil {
				serr.add(SyncVIPs, d.capture.syncVIPs(want.VIPs, plan.ids))
			}
			if d.tc != nil {
				serr.add(SyncPeerAddrs, d.tc.syncPeerAddrs(want.PeerAddrs, plan.ids))
				serr.add(SyncPeerIDs, d.tc.dropCounters(plan.ids))
			}
		}
	}
	if d.fast != nil {
		serr.add(SyncFastPathPorts, d.syncFastPathPorts(want.FastPathPorts))
	}
	return serr.orNil()
}

// PeerIDs returns the peer-id registry: each peer's id, as the capture and
// TC maps record it. It needs the capture or the TC layer.
func (d *Dataplane) PeerIDs() (map[string]uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errors.New("peer ids: dataplane closed")
	}
	if d.capture == nil && d.tc == nil {
		return nil, fmt.Errorf("peer ids: %s and %s: %w", LayerCapture, LayerTC, ErrLayerOff)
	}
	m, err := d.peerRegistry()
	if err != nil {
		return nil, err
	}
	return readPeerIDs(m)
}

// PeerCountersByName returns the TC counters per peer name (all
// interfaces, summed over CPUs), read under one lock with the registry so
// an id never lends its counts to another peer's name. Counters of ids
// that no peer holds are left out.
func (d *Dataplane) PeerCountersByName() (map[string]PeerCounters, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.layerOn(d.tc); err != nil {
		return nil, err
	}
	m, err := d.peerRegistry()
	if err != nil {
		return nil, err
	}
	ids, err := readPeerIDs(m)
	if err != nil {
		return nil, err
	}
	counts, err := d.tc.counters()
	if err != nil {
		return nil, err
	}
	out := map[string]PeerCounters{}
	for name, id := range ids {
		if c, ok := counts[id]; ok {
			out[name] = c
		}
	}
	return out, nil
}

// PeerAddrs lists the TC layer's address map.
func (d *Dataplane) PeerAddrs() ([]PeerAddr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.layerOn(d.tc); err != nil {
		return nil, err
	}
	var out []PeerAddr
	var k bpf.TcPeerAddr
	var id uint32
	it := d.tc.objs.PeerAddrs.Iterate()
	for it.Next(&k, &id) {
		out = append(out, PeerAddr{Addr: fromWords(k.Addr), PeerID: id})
	}
	return out, it.Err()
}

// peerRegistryFile is the registry's pin under PinDir.
const peerRegistryFile = "peer_ids"

// peerKey is a registry key: a peer name, NUL-padded.
type peerKey [maxPeerName + 1]byte

func peerKeyOf(name string) peerKey {
	var k peerKey
	copy(k[:], name)
	return k
}

func (k *peerKey) name() string {
	n, _, _ := bytes.Cut(k[:], []byte{0})
	return string(n)
}

func peerRegistrySpec() *ebpf.MapSpec {
	return &ebpf.MapSpec{
		Name:       "peer_ids",
		Type:       ebpf.Hash,
		KeySize:    uint32(len(peerKey{})),
		ValueSize:  4,
		MaxEntries: maxPeers,
	}
}

// peerRegistry returns the registry, opening its pin (or creating it) on
// first use. A new registry knows no peer, so the counters pinned before
// it cannot be attributed: they are deleted, and with them any chance of
// counts moving to another peer's name (an upgrade from the releases that
// numbered peers in memory lands here once). Call with d.mu held.
func (d *Dataplane) peerRegistry() (*ebpf.Map, error) {
	if d.peers != nil {
		return d.peers, nil
	}
	path := filepath.Join(d.cfg.pinDir(), peerRegistryFile)
	spec := peerRegistrySpec()
	m, err := ebpf.LoadPinnedMap(path, nil)
	switch {
	case err == nil:
		if cerr := spec.Compatible(m); cerr == nil {
			d.peers = m
			return m, nil
		}
		// Another layout (a future or past release): start over.
		_ = m.Close()
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("replace the peer-id registry %s: %w", path, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("open the peer-id registry %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create pin dir: %w", err)
	}
	m, err = ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("create the peer-id registry: %w", err)
	}
	if err := m.Pin(path); err != nil {
		_ = m.Close()
		return nil, fmt.Errorf("pin the peer-id registry at %s: %w", path, err)
	}
	if d.tc != nil {
		if err := d.tc.dropCounters(nil); err != nil {
			return nil, fmt.Errorf("new peer-id registry: %w", err)
		}
	}
	d.peers = m
	return m, nil
}

func readPeerIDs(m *ebpf.Map) (map[string]uint32, error) {
	out := map[string]uint32{}
	var k peerKey
	var id uint32
	it := m.Iterate()
	for it.Next(&k, &id) {
		out[k.name()] = id
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read the peer-id registry: %w", err)
	}
	return out, nil
}

// syncPeerIDs brings the registry in line with the peers wanted: released
// entries first (freeing room), then the new ones. It returns nil when the
// registry cannot be read; otherwise the plan, whose ids are those in the
// registry (new entries that failed to be written are moved to refused).
func (d *Dataplane) syncPeerIDs(want []string) (*peerPlan, error) {
	m, err := d.peerRegistry()
	if err != nil {
		return nil, err
	}
	have, err := readPeerIDs(m)
	if err != nil {
		return nil, err
	}
	plan := planPeerIDs(have, want)
	var errs firstErrors
	for name := range plan.release {
		k := peerKeyOf(name)
		if err := m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs.add(fmt.Errorf("release %s: %w", name, err))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(plan.add)) {
		k, id := peerKeyOf(name), plan.add[name]
		if err := m.Update(&k, id, ebpf.UpdateNoExist); err != nil {
			delete(plan.ids, name)
			plan.refused[name] = fmt.Errorf("assign id %d: %w", id, err)
		}
	}
	return &plan, errs.err()
}

// syncVIPs makes the VIP map hold exactly want (port 0: every port), for
// the peers that have an id.
func (l *captureLayer) syncVIPs(want map[netip.Addr]VIPTarget, ids map[string]uint32) error {
	m := l.objs.Vips
	have := map[bpf.CaptureVipKey]bpf.CaptureVipVal{}
	var k bpf.CaptureVipKey
	var v bpf.CaptureVipVal
	it := m.Iterate()
	for it.Next(&k, &v) {
		have[k] = v
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read the VIP map: %w", err)
	}
	var errs firstErrors
	keep := map[bpf.CaptureVipKey]bool{}
	for ip, t := range want {
		id, ok := ids[t.Peer]
		if !ok || !ip.IsValid() {
			continue
		}
		k := bpf.CaptureVipKey{Addr: words(ip)}
		v := bpf.CaptureVipVal{PeerId: id, ServiceId: serviceID(t.Service)}
		keep[k] = true
		if cur, ok := have[k]; ok && cur == v {
			continue
		}
		if err := m.Put(&k, &v); err != nil {
			errs.add(fmt.Errorf("install %s (%s from %s): %w", ip, t.Service, t.Peer, err))
		}
	}
	for k := range have {
		if keep[k] {
			continue
		}
		if err := m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs.add(fmt.Errorf("remove %s: %w", netip.AddrPortFrom(fromWords(k.Addr), k.Port), err))
		}
	}
	return errs.err()
}

// syncPeerAddrs makes the TC address map hold exactly want, for the peers
// that have an id.
func (l *tcLayer) syncPeerAddrs(want map[netip.Addr]string, ids map[string]uint32) error {
	m := l.objs.PeerAddrs
	have := map[bpf.TcPeerAddr]uint32{}
	var k bpf.TcPeerAddr
	var id uint32
	it := m.Iterate()
	for it.Next(&k, &id) {
		have[k] = id
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read the peer address map: %w", err)
	}
	var errs firstErrors
	keep := map[bpf.TcPeerAddr]bool{}
	for ip, peer := range want {
		id, ok := ids[peer]
		if !ok || !ip.IsValid() {
			continue
		}
		k := bpf.TcPeerAddr{Addr: words(ip)}
		keep[k] = true
		if cur, ok := have[k]; ok && cur == id {
			continue
		}
		if err := m.Put(&k, id); err != nil {
			errs.add(fmt.Errorf("map %s to %s: %w", ip, peer, err))
		}
	}
	for k := range have {
		if keep[k] {
			continue
		}
		if err := m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs.add(fmt.Errorf("unmap %s: %w", fromWords(k.Addr), err))
		}
	}
	return errs.err()
}

// dropCounters deletes the counters of every id not in ids (all of them
// when ids is nil).
func (l *tcLayer) dropCounters(ids map[string]uint32) error {
	held := map[uint32]bool{}
	for _, id := range ids {
		held[id] = true
	}
	var stale []uint32
	var k uint32
	var per []bpf.TcPeerCounters
	it := l.objs.PeerStats.Iterate()
	for it.Next(&k, &per) {
		if !held[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read the peer counters: %w", err)
	}
	var errs firstErrors
	for _, id := range stale {
		if err := l.objs.PeerStats.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs.add(fmt.Errorf("drop the counters of peer id %d: %w", id, err))
		}
	}
	return errs.err()
}

// counters sums the TC counters per peer id over CPUs.
func (l *tcLayer) counters() (map[uint32]PeerCounters, error) {
	out := map[uint32]PeerCounters{}
	var k uint32
	var per []bpf.TcPeerCounters
	it := l.objs.PeerStats.Iterate()
	for it.Next(&k, &per) {
		var sum PeerCounters
		for _, c := range per {
			sum.RxBytes += c.RxBytes
			sum.RxPackets += c.RxPackets
			sum.TxBytes += c.TxBytes
			sum.TxPackets += c.TxPackets
		}
		out[k] = sum
	}
	return out, it.Err()
}

// firstErrors keeps the first of many errors of one map and counts the
// rest, so a full map yields one line, not thousands.
type firstErrors struct {
	first error
	more  int
}

func (f *firstErrors) add(err error) {
	if f.first == nil {
		f.first = err
	} else {
		f.more++
	}
}

func (f *firstErrors) err() error {
	if f.first == nil || f.more == 0 {
		return f.first
	}
	return fmt.Errorf("%w (and %d more)", f.first, f.more)
}
