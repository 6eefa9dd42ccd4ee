package state

// Virtual IPs: every imported service (peer, service) gets a stable address
// from a configured range, kept in raft. The leader writes the plans of a
// VIPAllocator (virtual_ip_alloc.go); every node reads them from its view
// (DNS, the eBPF capture, the HTTP API).

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/hashicorp/go-memdb"
)

const tableVirtualIPs = "virtual-ips"

// VirtualIP is the virtual address of one imported service.
type VirtualIP struct {
	// Peer and Service name the imported service.
	Peer    string
	Service string
	// IPv4 is always set; IPv6 only when an IPv6 range is configured.
	IPv4 string
	IPv6 string `json:",omitempty"`
	RaftIndex
}

// VirtualIPKey names the service a virtual IP belongs to.
type VirtualIPKey struct {
	Peer    string
	Service string
}

// VirtualIPsRequest assigns and releases virtual IPs in one transaction.
type VirtualIPsRequest struct {
	// Assign upserts rows (CreateIndex is kept for an existing row).
	Assign []*VirtualIP `json:",omitempty"`
	// Release removes rows, except those whose service has instances again
	// by the time the entry is applied (a resync raced the release).
	Release []VirtualIPKey `json:",omitempty"`
}

// Errors of virtual IP writes; deterministic, the FSM returns them.
var (
	ErrVirtualIPInUse  = errors.New("virtual IP already assigned to another service")
	ErrVirtualIPFormat = errors.New("invalid virtual IP")
)

// optionalIndex indexes one string field, leaving rows where it is empty out
// of the index (memdb AllowMissing).
type optionalIndex struct {
	field func(obj any) string
}

func (o optionalIndex) FromObject(obj any) (bool, []byte, error) {
	v := o.field(obj)
	if v == "" {
		return false, nil, nil
	}
	return true, joinKey([]string{v}), nil
}

func (o optionalIndex) FromArgs(args ...any) ([]byte, error) {
	parts, err := stringArgs(args)
	if err != nil {
		return nil, err
	}
	if len(parts) != 1 {
		return nil, fmt.Errorf("want one index argument, got %d", len(parts))
	}
	return joinKey(parts), nil
}

func virtualIPTables() map[string]*memdb.TableSchema {
	return map[string]*memdb.TableSchema{
		tableVirtualIPs: {Name: tableVirtualIPs, Indexes: map[string]*memdb.IndexSchema{
			"id": {Name: "id", Unique: true, Indexer: keyIndex{parts: func(o any) []string {
				r := o.(*VirtualIP)
				return []string{r.Peer, r.Service}
			}}},
			"ipv4": {Name: "ipv4", Unique: true, AllowMissing: true, Indexer: optionalIndex{field: func(o any) string {
				return o.(*VirtualIP).IPv4
			}}},
			"ipv6": {Name: "ipv6", Unique: true, AllowMissing: true, Indexer: optionalIndex{field: func(o any) string {
				return o.(*VirtualIP).IPv6
			}}},
		}},
	}
}

// canonicalIP parses s as an address of the family want (4 or 6) and
// returns its canonical text.
func canonicalIP(s string, want int) (string, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return "", fmt.Errorf("%w %q", ErrVirtualIPFormat, s)
	}
	if (want == 4 && !a.Is4()) || (want == 6 && (!a.Is6() || a.Is4In6())) {
		return "", fmt.Errorf("%w %q: want an IPv%d address", ErrVirtualIPFormat, s, want)
	}
	return a.String(), nil
}

// VirtualIPsUpdate applies a VirtualIPsRequest: all or nothing. An address
// held by another service refuses the whole request.
func (s *Store) VirtualIPsUpdate(idx uint64, req *VirtualIPsRequest) error {
	tx := s.write()
	defer tx.Abort()
	changed := false
	for _, k := range req.Release {
		raw, err := tx.First(tableVirtualIPs, "id", k.Peer, k.Service)
		if err != nil {
			return fmt.Errorf("look up virtual IP of %s/%s: %w", k.Peer, k.Service, err)
		}
		if raw == nil {
			continue
		}
		inst, err := tx.First(tableServices, "service", k.Peer, k.Service)
		if err != nil {
			return fmt.Errorf("look up instances of %s/%s: %w", k.Peer, k.Service, err)
		}
		if inst != nil {
			continue // imported again: keep its address
		}
		if err := tx.Delete(tableVirtualIPs, raw); err != nil {
			return fmt.Errorf("release virtual IP of %s/%s: %w", k.Peer, k.Service, err)
		}
		changed = true
	}
	for i, v := range req.Assign {
		if v == nil || v.Peer == "" || v.Service == "" {
			return fmt.Errorf("virtual IP %d: peer and service are required", i)
		}
		cp := *v
		var err error
		if cp.IPv4, err = canonicalIP(v.IPv4, 4); err != nil {
			return fmt.Errorf("virtual IP of %s/%s: %w", v.Peer, v.Service, err)
		}
		if v.IPv6 != "" {
			if cp.IPv6, err = canonicalIP(v.IPv6, 6); err != nil {
				return fmt.Errorf("virtual IP of %s/%s: %w", v.Peer, v.Service, err)
			}
		}
		for _, ix := range []struct{ name, ip string }{{"ipv4", cp.IPv4}, {"ipv6", cp.IPv6}} {
			if ix.ip == "" {
				continue
			}
			raw, err := tx.First(tableVirtualIPs, ix.name, ix.ip)
			if err != nil {
				return fmt.Errorf("look up virtual IP %s: %w", ix.ip, err)
			}
			if raw != nil {
				o := raw.(*VirtualIP)
				if !strings.EqualFold(o.Peer, cp.Peer) || !strings.EqualFold(o.Service, cp.Service) {
					return fmt.Errorf("%s for %s/%s: %w (%s/%s)", ix.ip, cp.Peer, cp.Service, ErrVirtualIPInUse, o.Peer, o.Service)
				}
			}
		}
		raw, err := tx.First(tableVirtualIPs, "id", cp.Peer, cp.Service)
		if err != nil {
			return fmt.Errorf("look up virtual IP of %s/%s: %w", cp.Peer, cp.Service, err)
		}
		if raw != nil {
			old := raw.(*VirtualIP)
			if old.IPv4 == cp.IPv4 && old.IPv6 == cp.IPv6 {
				continue
			}
			cp.CreateIndex = old.CreateIndex
		} else {
			cp.CreateIndex = idx
		}
		cp.ModifyIndex = idx
		if err := tx.Insert(tableVirtualIPs, &cp); err != nil {
			return fmt.Errorf("assign virtual IP of %s/%s: %w", cp.Peer, cp.Service, err)
		}
		changed = true
	}
	if !changed {
		return nil
	}
	if err := bumpIndex(tx, idx, tableVirtualIPs); err != nil {
		return err
	}
	tx.Commit()
	return nil
}

// ---- reads ----

// VirtualIPs returns every virtual IP, sorted by peer then service.
func (s *Store) VirtualIPs(ws memdb.WatchSet) (uint64, []*VirtualIP, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableVirtualIPs)
	it, err := tx.Get(tableVirtualIPs, "id")
	if err != nil {
		return 0, nil, fmt.Errorf("list virtual IPs: %w", err)
	}
	if ws != nil {
		ws.Add(it.WatchCh())
	}
	var out []*VirtualIP
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*VirtualIP))
	}
	return idx, out, nil
}

// VirtualIP returns the virtual IP of one imported service, or nil.
func (s *Store) VirtualIP(ws memdb.WatchSet, peer, service string) (uint64, *VirtualIP, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableVirtualIPs)
	ch, raw, err := tx.FirstWatch(tableVirtualIPs, "id", peer, service)
	if err != nil {
		return 0, nil, fmt.Errorf("look up virtual IP of %s/%s: %w", peer, service, err)
	}
	if ws != nil {
		ws.Add(ch)
	}
	if raw == nil {
		return idx, nil, nil
	}
	return idx, raw.(*VirtualIP), nil
}

// VirtualIPByAddr returns the row holding a virtual address (IPv4 or
// IPv6), or nil.
func (s *Store) VirtualIPByAddr(ws memdb.WatchSet, addr netip.Addr) (uint64, *VirtualIP, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableVirtualIPs)
	addr = addr.Unmap()
	ixName := "ipv6"
	if addr.Is4() {
		ixName = "ipv4"
	}
	ch, raw, err := tx.FirstWatch(tableVirtualIPs, ixName, addr.WithZone("").String())
	if err != nil {
		return 0, nil, fmt.Errorf("look up virtual IP %s: %w", addr, err)
	}
	if ws != nil {
		ws.Add(ch)
	}
	if raw == nil {
		return idx, nil, nil
	}
	return idx, raw.(*VirtualIP), nil
}

// ImportedServiceNames returns every (peer, service) with at least one
// typical imported instance, sorted, and the services table's index.
func (s *Store) ImportedServiceNames(ws memdb.WatchSet) (uint64, []VirtualIPKey, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableServices)
	it, err := tx.Get(tableServices, "id")
	if err != nil {
		return 0, nil, fmt.Errorf("list imported services: %w", err)
	}
	if ws != nil {
		ws.Add(it.WatchCh())
	}
	seen := map[VirtualIPKey]bool{}
	var out []VirtualIPKey
	for raw := it.Next(); raw != nil; raw = it.Next() {
		r := raw.(*serviceRow)
		if r.PeerName == "" || r.Service.Kind != "" {
			continue
		}
		k := VirtualIPKey{Peer: strings.ToLower(r.PeerName), Service: strings.ToLower(r.Service.Service)}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	slices.SortFunc(out, compareKeys)
	return idx, out, nil
}

func compareKeys(a, b VirtualIPKey) int {
	if c := strings.Compare(a.Peer, b.Peer); c != 0 {
		return c
	}
	return strings.Compare(a.Service, b.Service)
}
