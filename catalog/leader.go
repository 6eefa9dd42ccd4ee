package catalog

import (
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/nodetls"
)

// bootstrapLoop waits until BootstrapExpect servers of this datacenter are in
// the gossip pool, then bootstraps raft with exactly those servers. A server
// with existing raft state, or one that joins a cluster that already has a
// leader, never bootstraps.
func (c *Cluster) bootstrapLoop() {
	if c.cfg.BootstrapExpect == 0 {
		return
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
		if addr, _ := c.raft.LeaderWithID(); addr != "" {
			return
		}
		cf := c.raft.GetConfiguration()
		if cf.Error() == nil && len(cf.Configuration().Servers) > 0 {
			return // existing state: raft recovers on its own
		}
		servers := c.Servers()
		if len(servers) < c.cfg.BootstrapExpect {
			continue
		}
		var conf raft.Configuration
		for _, m := range servers {
			if m.Meta.RaftAddr == "" {
				continue
			}
			// A dead server can still be gossiped as alive for a while;
			// bootstrapping with it would leave a configuration that can
			// never reach quorum. Consul confirms each peer by RPC; we dial
			// its raft port.
			if m.Name != c.cfg.NodeName && !c.reachable(m) {
				c.log.Info("bootstrap: server not reachable yet; waiting", "member", m.Name, "addr", m.Meta.RaftAddr)
				continue
			}
			conf.Servers = append(conf.Servers, raft.Server{
				Suffrage: raft.Voter, ID: raft.ServerID(m.Name), Address: raft.ServerAddress(m.Meta.RaftAddr),
			})
		}
		if len(conf.Servers) < c.cfg.BootstrapExpect {
			continue
		}
		if err := c.raft.BootstrapCluster(conf).Error(); err != nil && err != raft.ErrCantBootstrap {
			c.log.Error("bootstrap raft", "err", err)
			continue
		}
		c.log.Info("bootstrapped raft", "servers", len(conf.Servers))
		return
	}
}

// leaderLoop runs the leader's duties while this server is leader.
func (c *Cluster) leaderLoop() {
	var stop context.CancelFunc
	done := make(chan struct{})
	close(done)
	for {
		select {
		case <-c.ctx.Done():
			if stop != nil {
				stop()
				<-done
			}
			return
		case isLeader := <-c.raft.LeaderCh():
			if stop != nil {
				stop()
				<-done
				stop = nil
			}
			if !isLeader {
				c.log.Info("lost leadership")
				continue
			}
			c.log.Info("gained leadership")
			var ctx context.Context
			ctx, stop = context.WithCancel(c.ctx)
			done = make(chan struct{})
			go func() {
				defer close(done)
				c.lead(ctx)
			}()
		}
	}
}

// LeaderRoutine is work only the leader does (the peering controller's
// streams, CA bootstrap). It runs from when this server becomes leader (after
// every earlier entry is applied) until ctx ends with the leadership. It must
// return promptly once ctx is done.
type LeaderRoutine func(ctx context.Context)

// AddLeaderRoutine registers fn to run during every leadership of this
// server, starting now if it already leads. Servers only; on a client it does
// nothing.
func (c *Cluster) AddLeaderRoutine(name string, fn LeaderRoutine) {
	if c.raft == nil {
		return
	}
	c.routinesMu.Lock()
	defer c.routinesMu.Unlock()
	c.routines = append(c.routines, namedRoutine{name, fn})
	if c.leadership != nil {
		c.startRoutine(c.leadership, namedRoutine{name, fn})
	}
}

type namedRoutine struct {
	name string
	fn   LeaderRoutine
}

// lead runs the leader's work for one leadership: the membership
// reconciler and every registered routine, until ctx ends.
func (c *Cluster) lead(ctx context.Context) {
	// Make sure every entry committed by a previous leader is applied here
	// before reading the store.
	if err := c.raft.Barrier(c.timing.ApplyTimeout).Error(); err != nil {
		c.log.Warn("leader barrier failed", "err", err)
	}
	c.routinesMu.Lock()
	c.leadership = &leadership{ctx: ctx}
	for _, r := range c.routines {
		c.startRoutine(c.leadership, r)
	}
	l := c.leadership
	c.routinesMu.Unlock()
	c.leading(ctx)
	c.routinesMu.Lock()
	c.leadership = nil
	c.routinesMu.Unlock()
	l.wg.Wait()
}

type leadership struct {
	ctx context.Context
	wg  sync.WaitGroup
}

func (c *Cluster) startRoutine(l *leadership, r namedRoutine) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		c.log.Debug("leader routine started", "routine", r.name)
		r.fn(l.ctx)
	}()
}

// leading reconciles the catalog with the gossip pool: on every membership
// event and every ReconcileInterval, until ctx ends.
func (c *Cluster) leading(ctx context.Context) {
	tick := time.NewTicker(c.timing.ReconcileInterval)
	defer tick.Stop()
	reapUnknown := false
	for {
		if err := c.reconcile(ctx, reapUnknown); err != nil && ctx.Err() == nil {
			c.log.Warn("reconcile membership", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-c.events:
			// Let a burst of events settle into one pass.
			time.Sleep(10 * time.Millisecond)
			drain(c.events)
			reapUnknown = false
		case <-tick.C:
			reapUnknown = true
		}
	}
}

func drain[T any](ch chan T) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// reconcile makes the catalog and the raft configuration agree with the
// gossip pool:
//   - an alive member has its node and a passing serfHealth check;
//   - a failed member's serfHealth turns critical, so its services stop
//     passing;
//   - a member that left has its node and everything on it removed;
//   - an alive server missing from raft is added as a non-voter (autopilot
//     promotes it once stable), a server that left is removed.
//
// With reapUnknown, catalog nodes that the gossip pool no longer knows at all
// are removed too.
func (c *Cluster) reconcile(ctx context.Context, reapUnknown bool) error {
	members := c.Members()
	known := map[string]bool{}
	for _, m := range members {
		if m.Meta.Datacenter != "" && m.Meta.Datacenter != c.meta.Datacenter {
			continue
		}
		known[m.Name] = true
		var err error
		switch m.Status {
		case StatusAlive:
			err = c.reconcileAlive(ctx, m)
		case StatusFailed:
			err = c.setSerfHealth(ctx, m, state.HealthCritical, "Agent not live or unreachable")
		case StatusLeft:
			err = c.reconcileLeft(ctx, m)
		}
		if err != nil {
			return fmt.Errorf("member %s: %w", m.Name, err)
		}
	}
	if !reapUnknown {
		return nil
	}
	_, nodes, err := c.store.Nodes(nil, "")
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if known[n.Node] {
			continue
		}
		// Only nodes the gossip pool once vouched for (they carry the
		// leader's serfHealth check) are reaped; nodes registered directly
		// through /v1/catalog/register (external services) are not members
		// and stay, as in Consul.
		_, checks, err := c.store.NodeChecks(nil, "", n.Node)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(checks, func(hc *state.HealthCheck) bool { return hc.CheckID == state.SerfCheckID }) {
			continue
		}
		c.log.Info("removing node unknown to the gossip pool", "member", n.Node)
		if _, err := c.Apply(ctx, &Command{Type: CmdDeregister, Deregister: &state.DeregisterRequest{Node: n.Node}}); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) reconcileAlive(ctx context.Context, m Member) error {
	if m.Meta.Role == "server" && m.Meta.RaftAddr != "" {
		if err := c.ensureServer(m); err != nil {
			return err
		}
	}
	return c.setSerfHealth(ctx, m, state.HealthPassing, "Agent alive and reachable")
}

func (c *Cluster) reconcileLeft(ctx context.Context, m Member) error {
	if m.Meta.Role == "server" {
		if err := c.removeServer(m); err != nil {
			return err
		}
	}
	_, n, err := c.store.Node(nil, "", m.Name)
	if err != nil || n == nil {
		return err
	}
	c.log.Info("member left; deregistering its node", "member", m.Name)
	_, err = c.Apply(ctx, &Command{Type: CmdDeregister, Deregister: &state.DeregisterRequest{Node: m.Name}})
	return err
}

// setSerfHealth writes the member's node (if missing or moved) and its
// serfHealth check, only when something differs.
func (c *Cluster) setSerfHealth(ctx context.Context, m Member, status, output string) error {
	_, node, err := c.store.Node(nil, "", m.Name)
	if err != nil {
		return err
	}
	_, checks, err := c.store.NodeChecks(nil, "", m.Name)
	if err != nil {
		return err
	}
	for _, ch := range checks {
		if ch.CheckID == state.SerfCheckID && ch.Status == status && node != nil && node.Address == m.Addr {
			return nil
		}
	}
	if node == nil && status != state.HealthPassing {
		return nil // never seen alive by this leader: nothing to mark
	}
	req := &state.RegisterRequest{
		Node: &state.Node{ID: m.Meta.ID, Node: m.Name, Address: m.Addr, Datacenter: c.meta.Datacenter,
			TaggedAddresses: map[string]string{"lan": m.Addr, "lan_ipv4": m.Addr, "wan": m.Addr, "wan_ipv4": m.Addr}},
		Checks: []*state.HealthCheck{{CheckID: state.SerfCheckID, Name: state.SerfCheckName, Status: status, Output: output, Type: ""}},
	}
	if node != nil {
		// Keep what the node's own agent registered (meta); fix the address.
		cp := *node
		cp.Address = m.Addr
		cp.TaggedAddresses = req.Node.TaggedAddresses
		if cp.ID == "" {
			cp.ID = m.Meta.ID
		}
		req.Node = &cp
	}
	if status != state.HealthPassing {
		c.log.Warn("member failed; marking its services critical", "member", m.Name)
	}
	_, err = c.Apply(ctx, &Command{Type: CmdRegister, Register: req})
	return err
}

// ensureServer adds m to the raft configuration as a non-voter, or fixes
// its address; a voter stays a voter. Autopilot promotes a non-voter once it
// has been healthy for the stabilization time.
func (c *Cluster) ensureServer(m Member) error {
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("read raft configuration: %w", err)
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == m.Name {
			if string(s.Address) == m.Meta.RaftAddr {
				return nil
			}
			break
		}
	}
	// Gossip can still call a dead server alive. Only a server that answers
	// on its raft port is added; the next reconcile retries the others.
	if !c.reachable(m) {
		c.log.Info("server not reachable on its raft port; not adding it yet", "member", m.Name, "addr", m.Meta.RaftAddr)
		return nil
	}
	c.log.Info("adding server to raft as a non-voter", "member", m.Name, "addr", m.Meta.RaftAddr)
	if err := c.raft.AddNonvoter(raft.ServerID(m.Name), raft.ServerAddress(m.Meta.RaftAddr), 0, c.timing.ApplyTimeout).Error(); err != nil {
		return fmt.Errorf("add non-voter %s: %w", m.Name, err)
	}
	return nil
}

func (c *Cluster) removeServer(m Member) error {
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("read raft configuration: %w", err)
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == m.Name {
			c.log.Info("removing server that left from raft", "member", m.Name)
			if err := c.raft.RemoveServer(s.ID, 0, c.timing.ApplyTimeout).Error(); err != nil {
				return fmt.Errorf("remove server %s: %w", m.Name, err)
			}
		}
	}
	return nil
}

// reachable reports whether a server answers on its raft address: a TCP
// connection, or with TLS a completed handshake with a server certificate
// of this cluster.
func (c *Cluster) reachable(m Member) bool {
	conn, err := c.stream.Dial(raft.ServerAddress(m.Meta.RaftAddr), 500*time.Millisecond)
	if err != nil {
		return false
	}
	defer conn.Close()
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return true // no cluster trust: answering is all there is to check
	}
	// With cluster trust the handshake proved an admitted server; it must
	// also be the server the member claims to be, or a gossip member could
	// borrow another server's address to be added to raft.
	peer, err := nodetls.PeerAgent(tc.ConnectionState())
	if err != nil || peer.Node != m.Name {
		c.log.Warn("server's raft port presents another node's certificate; not adding it to raft", "member", m.Name, "certificate", peer.String())
		c.cfg.Refusals.Refused("raft", "node-mismatch")
		return false
	}
	return true
}
