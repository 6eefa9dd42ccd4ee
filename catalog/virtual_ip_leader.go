package catalog

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/catalog/state"
)

// Virtual IPs: every imported service (peer, service) gets a stable address
// from a configured range, kept in raft. The leader assigns them here, with
// the plan state.VIPAllocator computes; every node reads them from its view
// (DNS, the eBPF capture, the HTTP API).

// maxVIPBatch bounds the rows of one virtual-ips raft entry.
const maxVIPBatch = 512

// virtualIPLoop is the leader routine that keeps a virtual IP on every
// imported service: it wakes on every change of the services or the
// virtual IPs, and on a tick that expires grace periods.
func (c *Cluster) virtualIPLoop(ctx context.Context) {
	v4, err := state.ParseVirtualIPRange(c.cfg.virtualIPv4Range(), 4)
	if err != nil { // Validate refused it already
		c.log.Error("virtual IPs: bad IPv4 range; not assigning", "err", err)
		return
	}
	var v6 netip.Prefix
	if c.cfg.VirtualIPv6Range != "" {
		v6, err = state.ParseVirtualIPRange(c.cfg.VirtualIPv6Range, 6)
		if err != nil {
			c.log.Error("virtual IPs: bad IPv6 range; not assigning", "err", err)
			return
		}
	}
	grace := c.cfg.virtualIPGrace()
	st := &vipState{alloc: state.NewVIPAllocator(v4, v6, grace)}
	tick := time.NewTicker(min(max(grace/4, 10*time.Millisecond), 5*time.Second))
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
	alloc *state.VIPAllocator
	// unassigned is the last pass's count of services without an address,
	// so a full range is logged when it fills and when it has room again.
	unassigned int
}

// reconcileVirtualIPs makes one pass: it writes the allocator's plan, in
// batches. It adds what it read to ws.
func (c *Cluster) reconcileVirtualIPs(ctx context.Context, ws memdb.WatchSet, st *vipState, now time.Time) error {
	plan, err := st.alloc.Plan(c.store, ws, now)
	if err != nil {
		return err
	}
	if plan.Unassigned != st.unassigned {
		if plan.Unassigned > 0 {
			c.log.Warn("virtual IPs: range full; some imported services have no virtual IP",
				"services", plan.Unassigned, "ipv4_range", st.alloc.IPv4Range().String())
		} else if st.unassigned > 0 {
			c.log.Info("virtual IPs: every imported service has a virtual IP again")
		}
		st.unassigned = plan.Unassigned
	}
	if c.metrics != nil {
		c.metrics.vipUnassigned.Set(float64(plan.Unassigned))
	}
	for len(plan.Assign) > 0 || len(plan.Release) > 0 {
		req := &state.VirtualIPsRequest{}
		n := min(len(plan.Release), maxVIPBatch)
		req.Release, plan.Release = plan.Release[:n], plan.Release[n:]
		n = min(len(plan.Assign), maxVIPBatch-len(req.Release))
		req.Assign, plan.Assign = plan.Assign[:n], plan.Assign[n:]
		if _, err := c.Apply(ctx, &Command{Type: CmdVirtualIPs, VirtualIPs: req}); err != nil {
			return fmt.Errorf("write %d virtual IPs, release %d: %w", len(req.Assign), len(req.Release), err)
		}
		for _, k := range req.Release {
			st.alloc.Released(k)
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
