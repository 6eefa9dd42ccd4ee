package state

import (
	"net/netip"
	"time"

	"github.com/hashicorp/go-memdb"
)

// VIPAllocator decides which imported services get which virtual IPs. The
// leader keeps one per leadership and asks it for a plan on every change;
// it remembers only since when each service has been gone, so a new leader
// releases later, never earlier.
//
// It is not safe for concurrent use.
type VIPAllocator struct {
	r4    vipRange
	r6    *vipRange // nil: no IPv6 addresses
	grace time.Duration
	// gone is when each service with a virtual IP was first seen without
	// instances.
	gone map[VirtualIPKey]time.Time
}

// NewVIPAllocator returns an allocator taking IPv4 addresses from v4 and,
// when v6 is valid, IPv6 addresses from v6 (both as ParseVirtualIPRange
// returns them). A service's address is released once the service has been
// gone for grace.
func NewVIPAllocator(v4, v6 netip.Prefix, grace time.Duration) *VIPAllocator {
	a := &VIPAllocator{r4: newVIPRange(v4), grace: grace, gone: map[VirtualIPKey]time.Time{}}
	if v6.IsValid() {
		r6 := newVIPRange(v6)
		a.r6 = &r6
	}
	return a
}

// IPv4Range returns the range IPv4 addresses come from.
func (a *VIPAllocator) IPv4Range() netip.Prefix { return a.r4.prefix }

// VIPPlan is one pass's writes: a VirtualIPsRequest's worth, unbatched.
type VIPPlan struct {
	Assign  []*VirtualIP
	Release []VirtualIPKey
	// Unassigned counts the imported services left without an address: the
	// IPv4 range is full.
	Unassigned int
}

// Plan computes a pass's writes from the store: every imported service
// gets a valid address from the ranges; those gone longer than the grace
// period lose theirs. It is deterministic for a given store, ranges and
// gone times: the services without an address take the lowest free ones,
// in (peer, service) order. It adds what it read to ws.
func (a *VIPAllocator) Plan(store *Store, ws memdb.WatchSet, now time.Time) (*VIPPlan, error) {
	_, keys, err := store.ImportedServiceNames(ws)
	if err != nil {
		return nil, err
	}
	_, rows, err := store.VirtualIPs(ws)
	if err != nil {
		return nil, err
	}
	want := make(map[VirtualIPKey]bool, len(keys))
	for _, k := range keys {
		want[k] = true
	}
	a4 := newAllocator(a.r4)
	var a6 *allocator
	if a.r6 != nil {
		a6 = newAllocator(*a.r6)
	}
	have := map[VirtualIPKey]*VirtualIP{}
	plan := &VIPPlan{}
	for _, r := range rows {
		// Every held address stays taken for this pass, even one being
		// released: the release may be skipped if the service is back.
		a4.markUsed(r.IPv4)
		if a6 != nil {
			a6.markUsed(r.IPv6)
		}
		k := VirtualIPKey{Peer: r.Peer, Service: r.Service}
		have[k] = r
		if want[k] {
			delete(a.gone, k)
			continue
		}
		since, ok := a.gone[k]
		if !ok {
			a.gone[k] = now
			continue
		}
		if now.Sub(since) >= a.grace {
			plan.Release = append(plan.Release, k)
		}
	}
	for k := range a.gone {
		if have[k] == nil {
			delete(a.gone, k)
		}
	}
	for _, k := range keys {
		old := have[k]
		nv := &VirtualIP{Peer: k.Peer, Service: k.Service}
		if old != nil {
			nv.IPv4, nv.IPv6 = old.IPv4, old.IPv6
		}
		if !a.r4.contains(nv.IPv4) {
			ip, ok := a4.next()
			if !ok {
				if old == nil {
					plan.Unassigned++
					continue
				}
				// Out of the (changed) range, and no room in the new one:
				// keep the old address rather than none.
			} else {
				nv.IPv4 = ip.String()
			}
		}
		switch {
		case a.r6 == nil:
			nv.IPv6 = ""
		case !a.r6.contains(nv.IPv6):
			nv.IPv6 = ""
			if ip, ok := a6.next(); ok {
				nv.IPv6 = ip.String()
			}
		}
		if old != nil && old.IPv4 == nv.IPv4 && old.IPv6 == nv.IPv6 {
			continue
		}
		plan.Assign = append(plan.Assign, nv)
	}
	return plan, nil
}

// Released tells the allocator that k's address was released, so it stops
// counting k's absence.
func (a *VIPAllocator) Released(k VirtualIPKey) { delete(a.gone, k) }

// Addrs returns the virtual IPv4 and IPv6 addresses (each invalid when
// unset).
func (v *VirtualIP) Addrs() (v4, v6 netip.Addr) {
	v4, _ = netip.ParseAddr(v.IPv4)
	v6, _ = netip.ParseAddr(v.IPv6)
	return v4, v6
}
