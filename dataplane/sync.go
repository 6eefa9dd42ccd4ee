package dataplane

import (
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// Desired is what the catalog wants the eBPF maps to hold; Sync makes the
// maps of the loaded layers equal to it. The zero value empties them.
type Desired struct {
	// VIPs maps each virtual IP to the imported service it stands for.
	// Every port of a VIP is captured (capture layer).
	VIPs map[netip.Addr]VIPTarget
	// PeerAddrs maps the addresses of each peer's gateways and servers to
	// the peer's name, for the per-peer counters (TC layer).
	PeerAddrs map[netip.Addr]string
	// Peers are the peers that keep their id (and with it their counters)
	// even when they have no VIP and no address right now. Peers named in
	// VIPs or PeerAddrs keep theirs anyway.
	Peers []string
	// FastPathPorts are the ports of this node's instances whose plaintext
	// loopback legs enter the fast path; the listener port always stays.
	FastPathPorts []uint16
}

// VIPTarget names the imported service a virtual IP stands for.
type VIPTarget struct {
	Peer    string
	Service string
}

// PeerAddr is one entry of the TC layer's address map (PeerAddrs).
type PeerAddr struct {
	Addr   netip.Addr
	PeerID uint32
}

// The maps Sync reconciles, as named in SyncError (and in the agent's
// peerd_dataplane_sync_errors_total{maps=...}).
const (
	SyncPeerIDs       = "peer_ids"
	SyncVIPs          = "virtual_ips"
	SyncPeerAddrs     = "peer_addresses"
	SyncFastPathPorts = "fastpath_ports"
)

// SyncError reports the maps Sync could not bring in line with the desired
// state; every map it does not name was.
type SyncError struct {
	// Maps holds the failure of each map, by name (SyncVIPs, ...).
	Maps map[string]error
}

func (e *SyncError) Error() string {
	var b strings.Builder
	for i, name := range slices.Sorted(maps.Keys(e.Maps)) {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "sync %s: %v", name, e.Maps[name])
	}
	return b.String()
}

// Unwrap returns the errors of the failed maps.
func (e *SyncError) Unwrap() []error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(e.Maps)) {
		errs = append(errs, e.Maps[name])
	}
	return errs
}

func (e *SyncError) add(name string, err error) {
	if err == nil {
		return
	}
	if e.Maps == nil {
		e.Maps = map[string]error{}
	}
	e.Maps[name] = errors.Join(e.Maps[name], err)
}

func (e *SyncError) orNil() error {
	if len(e.Maps) == 0 {
		return nil
	}
	return e
}

// Peer ids. The eBPF programs know a peer by a small id: the capture layer
// records it with each captured connection and the TC layer counts bytes
// and packets per id. The assignment name → id is kept in a pinned map
// (PinDir/peer_ids) beside the other pins, so a peer keeps its id, and the
// pinned counters stay its own, across restarts. A peer new to the
// registry gets the lowest free id; new peers are numbered in name order,
// so the same desired state on an empty registry always gives the same
// ids. A peer the desired state no longer names is released: its entry
// and its counters are deleted (a later peer of the same name starts from
// zero, and a new peer given the id never inherits counts). An id is not
// handed out again in the Sync that released it.

// maxPeerName is the longest peer name the registry holds (a DNS label,
// Consul's rule for peer names, is at most 63 bytes).
const maxPeerName = 63

// maxPeers is the registry's capacity; it matches peer_stats in bpf/tc.c.
const maxPeers = 4096

// peerPlan is what a Sync does to the registry.
type peerPlan struct {
	// ids is the assignment after the Sync, for the peers wanted.
	ids map[string]uint32
	// add are the new entries (a subset of ids); release the entries to
	// delete, with the ids they had.
	add     map[string]uint32
	release map[string]uint32
	// refused are wanted peers that got no id (a name too long, the
	// registry full), with the reason.
	refused map[string]error
}

// planPeerIDs compares the registry's assignment with the peers wanted.
func planPeerIDs(have map[string]uint32, want []string) peerPlan {
	p := peerPlan{ids: map[string]uint32{}, add: map[string]uint32{}, release: map[string]uint32{}, refused: map[string]error{}}
	wanted := map[string]bool{}
	for _, name := range want {
		wanted[name] = true
	}
	used := map[uint32]bool{}
	for name, id := range have {
		used[id] = true // released ids too: not reused in this Sync
		if wanted[name] {
			p.ids[name] = id
		} else {
			p.release[name] = id
		}
	}
	next := uint32(1)
	for _, name := range slices.Sorted(maps.Keys(wanted)) {
		if _, ok := p.ids[name]; ok {
			continue
		}
		if name == "" || len(name) > maxPeerName {
			p.refused[name] = fmt.Errorf("peer name %q: want 1 to %d bytes", name, maxPeerName)
			continue
		}
		if len(p.ids) >= maxPeers {
			p.refused[name] = fmt.Errorf("peer %q: no free peer id (%d in use)", name, maxPeers)
			continue
		}
		for used[next] {
			next++
		}
		used[next] = true
		p.ids[name], p.add[name] = next, next
	}
	return p
}

// wantedPeers lists every peer the desired state names.
func (d *Desired) wantedPeers() []string {
	set := map[string]bool{}
	for _, p := range d.Peers {
		set[p] = true
	}
	for _, t := range d.VIPs {
		set[t.Peer] = true
	}
	for _, p := range d.PeerAddrs {
		set[p] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// serviceID is the id a VIP's service is recorded under (Origin.ServiceID):
// the 32-bit FNV-1a hash of its name. It is stable across restarts and
// nodes; with the peer id it tells captured connections apart in logs, but
// it is not guaranteed unique: the catalog knows services by name.
func serviceID(name string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return h.Sum32()
}
