package catalog

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/hashicorp/go-memdb"
)

// maxVIPBatch bounds the rows of one virtual-ips raft entry.
const maxVIPBatch = 512

// virtualIPLoop is the leader routine that keeps a virtual IP on every
// imported service: it wakes on every change of the services or the
// virtual IPs, and on a tick that expires grace periods.
func (c *Cluster) virtualIPLoop(ctx context.Context) {
	v4, err := ParseVirtualIPRange(c.cfg.virtualIPv4Range(), 4)
	if err != nil { // Validate refused it already
		c.log.Error("virtual IPs: bad IPv4 range; not assigning", "err", err)
		return
	}
	st := &vipState{r4: newVIPRange(v4), gone: map[VirtualIPKey]time.Time{}, grace: c.cfg.virtualIPGrace()}
	if c.cfg.VirtualIPv6Range != "" {
		v6, err := ParseVirtualIPRange(c.cfg.VirtualIPv6Range, 6)
		if err != nil {
			c.log.Error("virtual IPs: bad IPv6 range; not assigning", "err", err)
			return
		}
		r6 := newVIPRange(v6)
		st.r6 = &r6
	}
	tick := time.NewTicker(min(max(st.grace/4, 10*time.Millisecond), 5*time.Second))
	defer tick.Stop()
	for {
		ws := memdb.NewWatchSet()
		if err := c.reconcileVirtualIPs(ctx, ws, st, time.Now()); err != nil && ctx.Err() == nil {
			c.log.Warn("virtual IPs: reconcile", "err", err)
		}
		wctx, cancel := context.WithCancel(ctx)
		ch := ws.WatchCh(wctx)
		select {
		case <-ctx.Done():
			cancel()
			return
		case <-ch:
			// Let a burst of imports settle into one raft entry.
			t := time.NewTimer(20 * time.Millisecond)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		case <-tick.C:
		}
		cancel()
	}
}

// vipState is what one leadership's virtual IP routine remembers.
type vipState struct {
	r4    vipRange
	r6    *vipRange // nil: no IPv6 addresses
	grace time.Duration
	// gone is when each service with a virtual IP was first seen without
	// instances; a new leader starts counting afresh (it releases later,
	// never earlier).
	gone       map[VirtualIPKey]time.Time
	unassigned int
}

// reconcileVirtualIPs makes one pass: every imported service gets a valid
// address from the configured ranges; those gone longer than the grace
// period lose theirs. It adds what it read to ws.
func (c *Cluster) reconcileVirtualIPs(ctx context.Context, ws memdb.WatchSet, st *vipState, now time.Time) error {
	plan, err := planVirtualIPs(c.store, ws, st, now)
	if err != nil {
		return err
	}
	if plan.unassigned != st.unassigned {
		if plan.unassigned > 0 {
			c.log.Warn("virtual IPs: range full; some imported services have no virtual IP",
				"services", plan.unassigned, "ipv4_range", st.r4.prefix.String())
		} else if st.unassigned > 0 {
			c.log.Info("virtual IPs: every imported service has a virtual IP again")
		}
		st.unassigned = plan.unassigned
	}
	if c.metrics != nil {
		c.metrics.vipUnassigned.Set(float64(plan.unassigned))
	}
	for len(plan.assign) > 0 || len(plan.release) > 0 {
		req := &VirtualIPsRequest{}
		n := min(len(plan.release), maxVIPBatch)
		req.Release, plan.release = plan.release[:n], plan.release[n:]
		n = min(len(plan.assign), maxVIPBatch-len(req.Release))
		req.Assign, plan.assign = plan.assign[:n], plan.assign[n:]
		if _, err := c.Apply(ctx, &Command{Type: CmdVirtualIPs, VirtualIPs: req}); err != nil {
			return fmt.Errorf("write %d virtual IPs, release %d: %w", len(req.Assign), len(req.Release), err)
		}
		for _, k := range req.Release {
			delete(st.gone, k)
			c.log.Info("virtual IPs: released", "peer", k.Peer, "service", k.Service)
		}
		for _, v := range req.Assign {
			c.log.Debug("virtual IPs: assigned", "peer", v.Peer, "service", v.Service, "ipv4", v.IPv4, "ipv6", v.IPv6)
		}
		if c.metrics != nil {
			c.metrics.vipAssigned.Add(float64(len(req.Assign)))
		}
	}
	return nil
}

type vipPlan struct {
	assign     []*VirtualIP
	release    []VirtualIPKey
	unassigned int
}

// planVirtualIPs computes a pass's writes from the store. It is
// deterministic for a given store, ranges and gone times: the services
// without an address take the lowest free ones, in (peer, service) order.
func planVirtualIPs(store *Store, ws memdb.WatchSet, st *vipState, now time.Time) (*vipPlan, error) {
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
	a4 := newAllocator(st.r4)
	var a6 *allocator
	if st.r6 != nil {
		a6 = newAllocator(*st.r6)
	}
	have := map[VirtualIPKey]*VirtualIP{}
	plan := &vipPlan{}
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
			delete(st.gone, k)
			continue
		}
		since, ok := st.gone[k]
		if !ok {
			st.gone[k] = now
			continue
		}
		if now.Sub(since) >= st.grace {
			plan.release = append(plan.release, k)
		}
	}
	for k := range st.gone {
		if have[k] == nil {
			delete(st.gone, k)
		}
	}
	for _, k := range keys {
		old := have[k]
		nv := &VirtualIP{Peer: k.Peer, Service: k.Service}
		if old != nil {
			nv.IPv4, nv.IPv6 = old.IPv4, old.IPv6
		}
		if !st.r4.contains(nv.IPv4) {
			ip, ok := a4.next()
			if !ok {
				if old == nil {
					plan.unassigned++
					continue
				}
				// Out of the (changed) range, and no room in the new one:
				// keep the old address rather than none.
			} else {
				nv.IPv4 = ip.String()
			}
		}
		switch {
		case st.r6 == nil:
			nv.IPv6 = ""
		case !st.r6.contains(nv.IPv6):
			nv.IPv6 = ""
			if ip, ok := a6.next(); ok {
				nv.IPv6 = ip.String()
			}
		}
		if old != nil && old.IPv4 == nv.IPv4 && old.IPv6 == nv.IPv6 {
			continue
		}
		plan.assign = append(plan.assign, nv)
	}
	return plan, nil
}

// Addrs returns the virtual IPv4 and IPv6 addresses (each invalid when
// unset).
func (v *VirtualIP) Addrs() (v4, v6 netip.Addr) {
	v4, _ = netip.ParseAddr(v.IPv4)
	v6, _ = netip.ParseAddr(v.IPv6)
	return v4, v6
}
