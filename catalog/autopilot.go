package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/peerd/peerd/catalog/pbcatalog"
)

// AutopilotConfig is how the leader manages the raft membership of the
// servers, as Consul's autopilot does: a server added after bootstrap joins
// as a non-voter and is promoted once it has been healthy for
// ServerStabilizationTime; a failed server is removed once it has been
// failed for DeadServerReapTime. Zero fields take the defaults named on
// them.
type AutopilotConfig struct {
	// CleanupDeadServers removes servers that gossip calls failed from the
	// raft configuration after DeadServerReapTime, never so many that the
	// remaining healthy voters lose their quorum. DefaultConfig sets it.
	CleanupDeadServers bool
	// DeadServerReapTime is how long a server must have been failed before
	// it is removed. Zero value: 72h (Consul's reconnect timeout, after which
	// its gossip forgets a failed member).
	DeadServerReapTime time.Duration
	// LastContactThreshold is the longest a healthy server may go without
	// hearing from the leader. Zero value: 200ms.
	LastContactThreshold time.Duration
	// MaxTrailingLogs is how many log entries a healthy server may be behind
	// the leader. Zero value: 250.
	MaxTrailingLogs uint64
	// ServerStabilizationTime is how long a new server must stay healthy
	// before it becomes a voter. Zero value: Timing.ServerStabilizationTime.
	ServerStabilizationTime time.Duration
}

func (a AutopilotConfig) withDefaults(t Timing) AutopilotConfig {
	if a.DeadServerReapTime == 0 {
		a.DeadServerReapTime = 72 * time.Hour
	}
	if a.LastContactThreshold == 0 {
		a.LastContactThreshold = 200 * time.Millisecond
	}
	if a.MaxTrailingLogs == 0 {
		a.MaxTrailingLogs = 250
	}
	if a.ServerStabilizationTime == 0 {
		a.ServerStabilizationTime = t.ServerStabilizationTime
	}
	return a
}

func (a AutopilotConfig) validate() error {
	var errs []error
	for name, d := range map[string]time.Duration{
		"dead server reap time": a.DeadServerReapTime, "last contact threshold": a.LastContactThreshold,
		"server stabilization time": a.ServerStabilizationTime,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("autopilot %s %v: must not be negative", name, d))
		}
	}
	return errors.Join(errs...)
}

// Server statuses of AutopilotServer.Status, as Consul names them.
const (
	AutopilotLeader   = "leader"
	AutopilotVoter    = "voter"
	AutopilotNonVoter = "non-voter"
)

// AutopilotServer is the leader's view of one server of the raft
// configuration.
type AutopilotServer struct {
	// ID is the raft server ID (peerd uses the node name).
	ID, Name, Address string
	// NodeStatus is the server's gossip status (alive, failed, left, none).
	NodeStatus string
	Version    string
	// LastContact is how long ago the server last heard from the leader
	// (0 for the leader; -1 if unknown).
	LastContact         time.Duration
	LastTerm, LastIndex uint64
	// Healthy: alive in gossip, answering, hearing from the leader within
	// LastContactThreshold and at most MaxTrailingLogs behind.
	Healthy bool
	// StableSince is when Healthy last changed.
	StableSince time.Time
	// Status is AutopilotLeader, AutopilotVoter or AutopilotNonVoter.
	Status string
	Meta   map[string]string
}

// AutopilotState is the leader's last autopilot pass.
type AutopilotState struct {
	// Healthy: every server is healthy and the healthy voters have quorum.
	Healthy bool
	// FailureTolerance is how many voters can fail without losing quorum.
	FailureTolerance int
	// OptimisticFailureTolerance also counts the healthy non-voters that
	// would be promoted in time.
	OptimisticFailureTolerance int
	Leader                     string
	Voters                     []string
	Servers                    map[string]AutopilotServer
}

// autopilot is the leader's bookkeeping between passes. Its maps are reset
// at the start of every leadership.
type autopilot struct {
	mu    sync.Mutex
	state *AutopilotState
	// health is the last health of each server and when it last changed.
	health map[raft.ServerID]AutopilotServer
	// failedSince is when this leader first saw each server failed.
	failedSince map[raft.ServerID]time.Time
}

// ErrNotLeader means the call is answered by the raft leader only.
var ErrNotLeader = errors.New("this server is not the raft leader")

// AutopilotConfiguration returns the autopilot settings in effect.
func (c *Cluster) AutopilotConfiguration() AutopilotConfig {
	return c.cfg.Autopilot.withDefaults(c.timing)
}

// AutopilotState returns the leader's last autopilot pass (leader only:
// ErrNotLeader elsewhere; ErrNoLeader before the first pass).
func (c *Cluster) AutopilotState() (AutopilotState, error) {
	if !c.IsLeader() {
		return AutopilotState{}, ErrNotLeader
	}
	c.ap.mu.Lock()
	defer c.ap.mu.Unlock()
	if c.ap.state == nil {
		return AutopilotState{}, fmt.Errorf("autopilot has not run yet on this leader: %w", ErrNoLeader)
	}
	st := *c.ap.state
	st.Voters = slices.Clone(st.Voters)
	st.Servers = make(map[string]AutopilotServer, len(c.ap.state.Servers))
	for k, v := range c.ap.state.Servers {
		st.Servers[k] = v
	}
	return st, nil
}

// RaftServer is one server of the raft configuration.
type RaftServer struct {
	ID, Node, Address string
	Leader, Voter     bool
}

// RaftConfiguration returns the raft configuration this server knows and
// the log index it was committed at (servers only).
func (c *Cluster) RaftConfiguration() ([]RaftServer, uint64, error) {
	if c.raft == nil {
		return nil, 0, errors.New("the raft configuration is known to servers only")
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, 0, fmt.Errorf("read raft configuration: %w", err)
	}
	_, leader := c.raft.LeaderWithID()
	var out []RaftServer
	for _, s := range f.Configuration().Servers {
		out = append(out, RaftServer{ID: string(s.ID), Node: string(s.ID), Address: string(s.Address),
			Leader: s.ID == leader, Voter: s.Suffrage == raft.Voter})
	}
	return out, f.Index(), nil
}

// Errors of RemovePeer.
var (
	// ErrUnknownPeer means no server of the raft configuration has the ID.
	ErrUnknownPeer = errors.New("no such server in the raft configuration")
	// ErrRemovalRefused means the leader refused the removal: the server is
	// the leader itself, or the healthy voters would lose quorum.
	ErrRemovalRefused = errors.New("removal refused")
)

// RemovePeer removes the server with raft ID id from the raft configuration
// by hand, on the leader or relayed to it from any node. The leader refuses
// to remove itself (have it leave instead) and a voter whose removal would
// leave the healthy voters without quorum (ErrRemovalRefused).
func (c *Cluster) RemovePeer(ctx context.Context, id string) error {
	return c.removePeer(ctx, id, false)
}

func (c *Cluster) removePeer(ctx context.Context, id string, forwarded bool) error {
	if !c.IsLeader() {
		if forwarded {
			return fmt.Errorf("remove peer %q: %w", id, ErrNoLeader)
		}
		return c.forwardRemovePeer(ctx, id)
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("read raft configuration: %w", err)
	}
	servers := f.Configuration().Servers
	i := slices.IndexFunc(servers, func(s raft.Server) bool { return string(s.ID) == id })
	if i < 0 {
		c.refuseAutopilot("unknown_peer", "remove peer: no such server", "id", id)
		return fmt.Errorf("remove peer %q: %w (list them with peerctl operator raft list-peers)", id, ErrUnknownPeer)
	}
	if id == c.cfg.NodeName {
		c.refuseAutopilot("remove_leader", "remove peer: refusing to remove the leader", "id", id)
		return fmt.Errorf("remove peer %q: %w: it is the leader; have it leave (stop its agent) instead", id, ErrRemovalRefused)
	}
	if servers[i].Suffrage == raft.Voter && !c.quorumAfterRemoval(servers, servers[i].ID) {
		c.refuseAutopilot("quorum", "remove peer: refusing, the healthy voters would lose quorum", "id", id)
		return fmt.Errorf("remove peer %q: %w: the remaining healthy voters would have no quorum; bring servers back first", id, ErrRemovalRefused)
	}
	c.log.Info("removing server from raft by operator request", "id", id)
	if err := c.raft.RemoveServer(servers[i].ID, f.Index(), within(ctx, c.timing.ApplyTimeout)).Error(); err != nil {
		return fmt.Errorf("remove peer %q: %w", id, err)
	}
	return nil
}

// forwardRemovePeer sends a removal to the leader (from a client: to any
// server, which relays it).
func (c *Cluster) forwardRemovePeer(ctx context.Context, id string) error {
	conn, err := c.LeaderConn()
	if err != nil {
		return fmt.Errorf("remove peer %q: %w", id, err)
	}
	_, err = pbcatalog.NewCatalogServiceClient(conn).RemovePeer(ctx, &pbcatalog.RemovePeerRequest{Id: id, Forwarded: c.raft != nil})
	switch st, _ := status.FromError(err); {
	case err == nil:
		return nil
	case st.Code() == codes.NotFound:
		return fmt.Errorf("%s: %w", st.Message(), ErrUnknownPeer)
	case st.Code() == codes.FailedPrecondition:
		return fmt.Errorf("%s: %w", st.Message(), ErrRemovalRefused)
	case st.Code() == codes.Unavailable:
		return fmt.Errorf("remove peer %q: %w: %s", id, ErrNoLeader, st.Message())
	default:
		return fmt.Errorf("remove peer %q on the leader: %s", id, st.Message())
	}
}

// RemovePeer serves a removal relayed from another node.
// With TLS, a client node may ask (its HTTP API relays an operator's
// removal, like a config write) but not relay.
func (s *catalogServer) RemovePeer(ctx context.Context, req *pbcatalog.RemovePeerRequest) (*pbcatalog.RemovePeerResponse, error) {
	if err := s.c.authorizeCall(ctx, "RemovePeer", false, req.GetForwarded()); err != nil {
		return nil, err
	}
	err := s.c.removePeer(ctx, req.GetId(), req.GetForwarded())
	switch {
	case err == nil:
		return &pbcatalog.RemovePeerResponse{}, nil
	case errors.Is(err, ErrUnknownPeer):
		return nil, status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrRemovalRefused):
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	return nil, toStatus(err)
}

// quorumAfterRemoval reports whether the voters that gossip calls alive,
// without id, would still be a quorum of the voters left after removing id.
func (c *Cluster) quorumAfterRemoval(servers []raft.Server, id raft.ServerID) bool {
	status := c.memberStatus()
	voters, healthy := 0, 0
	for _, s := range servers {
		if s.Suffrage != raft.Voter || s.ID == id {
			continue
		}
		voters++
		if status[string(s.ID)] == StatusAlive || string(s.ID) == c.cfg.NodeName {
			healthy++
		}
	}
	return healthy >= voters/2+1
}

func (c *Cluster) memberStatus() map[string]MemberStatus {
	out := map[string]MemberStatus{}
	for _, m := range c.Members() {
		out[m.Name] = m.Status
	}
	return out
}

func (c *Cluster) refuseAutopilot(reason, msg string, args ...any) {
	c.log.Warn(msg, append(args, "reason", reason)...)
	if c.metrics != nil {
		c.metrics.autopilotRefusals.WithLabelValues(reason).Inc()
	}
}

// autopilotLoop runs an autopilot pass every AutopilotInterval while this
// server leads.
func (c *Cluster) autopilotLoop(ctx context.Context) {
	c.ap.mu.Lock()
	c.ap.state = nil
	c.ap.health = map[raft.ServerID]AutopilotServer{}
	c.ap.failedSince = map[raft.ServerID]time.Time{}
	c.ap.mu.Unlock()
	tick := time.NewTicker(c.timing.AutopilotInterval)
	defer tick.Stop()
	for {
		if err := c.autopilotPass(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("autopilot pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// autopilotPass judges every server's health, promotes the non-voters that
// have been healthy for the stabilization time and removes the servers that
// have been failed for the reap time.
func (c *Cluster) autopilotPass(ctx context.Context) error {
	cfg := c.AutopilotConfiguration()
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("read raft configuration: %w", err)
	}
	servers := f.Configuration().Servers
	members := map[string]Member{}
	for _, m := range c.Members() {
		if m.Meta.Role == "server" && m.Meta.Datacenter == c.meta.Datacenter {
			members[m.Name] = m
		}
	}
	members[c.cfg.NodeName] = c.LocalMember()
	stats := c.fetchRaftStats(ctx, servers, members)
	self := stats[raft.ServerID(c.cfg.NodeName)]
	now := time.Now()

	c.ap.mu.Lock()
	st := &AutopilotState{Leader: c.cfg.NodeName, Servers: map[string]AutopilotServer{}}
	voters, healthyVoters, healthyNonVoters, allHealthy := 0, 0, 0, true
	for _, s := range servers {
		m, known := members[string(s.ID)]
		rs, ok := stats[s.ID]
		h := AutopilotServer{ID: string(s.ID), Name: string(s.ID), Address: string(s.Address),
			NodeStatus: StatusNone.String(), LastContact: -1, Status: AutopilotNonVoter}
		if known {
			h.NodeStatus, h.Version = m.Status.String(), m.Meta.Build
			h.Meta = map[string]string{"role": m.Meta.Role, "dc": m.Meta.Datacenter}
		}
		if ok {
			h.LastContact, h.LastTerm, h.LastIndex = rs.lastContact, rs.lastTerm, rs.lastIndex
		}
		switch {
		case string(s.ID) == c.cfg.NodeName:
			h.Status = AutopilotLeader
		case s.Suffrage == raft.Voter:
			h.Status = AutopilotVoter
		}
		h.Healthy = known && m.Status == StatusAlive && ok &&
			h.LastContact >= 0 && h.LastContact <= cfg.LastContactThreshold &&
			h.LastTerm == self.lastTerm && self.lastIndex <= h.LastIndex+cfg.MaxTrailingLogs
		if prev, seen := c.ap.health[s.ID]; seen && prev.Healthy == h.Healthy {
			h.StableSince = prev.StableSince
		} else {
			h.StableSince = now
		}
		c.ap.health[s.ID] = h
		if h.NodeStatus == StatusFailed.String() {
			if _, seen := c.ap.failedSince[s.ID]; !seen {
				c.ap.failedSince[s.ID] = now
			}
		} else {
			delete(c.ap.failedSince, s.ID)
		}
		st.Servers[h.ID] = h
		if s.Suffrage == raft.Voter {
			voters++
			st.Voters = append(st.Voters, h.ID)
			if h.Healthy {
				healthyVoters++
			}
		} else if h.Healthy {
			healthyNonVoters++
		}
		allHealthy = allHealthy && h.Healthy
	}
	quorum := voters/2 + 1
	st.FailureTolerance = max(healthyVoters-quorum, 0)
	st.OptimisticFailureTolerance = max(healthyVoters+healthyNonVoters-quorum, 0)
	st.Healthy = allHealthy && healthyVoters >= quorum
	slices.Sort(st.Voters)
	c.ap.state = st
	health := make(map[raft.ServerID]AutopilotServer, len(c.ap.health))
	for k, v := range c.ap.health {
		health[k] = v
	}
	failedSince := make(map[raft.ServerID]time.Time, len(c.ap.failedSince))
	for k, v := range c.ap.failedSince {
		failedSince[k] = v
	}
	c.ap.mu.Unlock()
	if c.metrics != nil {
		c.metrics.autopilotHealthy.Set(boolFloat(st.Healthy))
		c.metrics.autopilotFailureTolerance.Set(float64(st.FailureTolerance))
	}

	var errs []error
	for _, s := range servers {
		h := health[s.ID]
		if s.Suffrage == raft.Voter || !h.Healthy || now.Sub(h.StableSince) < cfg.ServerStabilizationTime {
			continue
		}
		c.log.Info("autopilot: promoting server to voter", "id", s.ID, "stable_for", now.Sub(h.StableSince).Round(time.Millisecond))
		if err := c.raft.AddVoter(s.ID, s.Address, 0, c.timing.ApplyTimeout).Error(); err != nil {
			errs = append(errs, fmt.Errorf("promote %s: %w", s.ID, err))
			continue
		}
		if c.metrics != nil {
			c.metrics.autopilotPromotions.Inc()
		}
	}
	if cfg.CleanupDeadServers {
		errs = append(errs, c.removeDeadServers(cfg, servers, failedSince, now))
	}
	return errors.Join(errs...)
}

// removeDeadServers removes, one at a time, the servers failed for at least
// the reap time. Like Consul's autopilot it removes at most (voters-1)/2
// voters, so never the last two, and it refuses a voter whose removal would
// leave the healthy voters without quorum.
func (c *Cluster) removeDeadServers(cfg AutopilotConfig, servers []raft.Server, failedSince map[raft.ServerID]time.Time, now time.Time) error {
	// servers shrinks as they go; raft shares the slice it returned.
	servers = slices.Clone(servers)
	voters := 0
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	budget := (voters - 1) / 2
	for _, s := range slices.Clone(servers) {
		since, failed := failedSince[s.ID]
		if !failed || now.Sub(since) < cfg.DeadServerReapTime || string(s.ID) == c.cfg.NodeName {
			continue
		}
		if s.Suffrage == raft.Voter && budget < 1 {
			c.refuseAutopilot("quorum", "autopilot: not removing failed server: it would remove more than half of the voters",
				"id", s.ID, "voters", voters, "failed_for", now.Sub(since).Round(time.Second))
			continue
		}
		if s.Suffrage == raft.Voter && !c.quorumAfterRemoval(servers, s.ID) {
			c.refuseAutopilot("quorum", "autopilot: not removing failed server: the healthy voters would lose quorum",
				"id", s.ID, "failed_for", now.Sub(since).Round(time.Second))
			continue
		}
		c.log.Info("autopilot: removing failed server from raft", "id", s.ID, "failed_for", now.Sub(since).Round(time.Millisecond))
		if err := c.raft.RemoveServer(s.ID, 0, c.timing.ApplyTimeout).Error(); err != nil {
			return fmt.Errorf("remove failed server %s: %w", s.ID, err)
		}
		if c.metrics != nil {
			c.metrics.autopilotRemovals.Inc()
		}
		if s.Suffrage == raft.Voter {
			budget--
		}
		servers = slices.DeleteFunc(servers, func(o raft.Server) bool { return o.ID == s.ID })
	}
	return nil
}

type raftStats struct {
	lastContact         time.Duration
	lastTerm, lastIndex uint64
}

// localRaftStats is this server's raft view.
func (c *Cluster) localRaftStats() raftStats {
	st := c.raft.Stats()
	term, _ := strconv.ParseUint(st["last_log_term"], 10, 64)
	rs := raftStats{lastContact: 0, lastTerm: term, lastIndex: c.raft.LastIndex()}
	if c.raft.State() != raft.Leader {
		if lc := c.raft.LastContact(); lc.IsZero() {
			rs.lastContact = -1
		} else {
			rs.lastContact = time.Since(lc)
		}
	}
	return rs
}

// fetchRaftStats asks every server of the configuration that gossip knows
// alive for its raft stats, in parallel; servers that do not answer within
// a second are missing from the result.
func (c *Cluster) fetchRaftStats(ctx context.Context, servers []raft.Server, members map[string]Member) map[raft.ServerID]raftStats {
	out := map[raft.ServerID]raftStats{raft.ServerID(c.cfg.NodeName): c.localRaftStats()}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range servers {
		m, ok := members[string(s.ID)]
		if string(s.ID) == c.cfg.NodeName || !ok || m.Status != StatusAlive || m.Meta.GRPCAddr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cc, err := c.conns.get(m.Meta.GRPCAddr)
			if err != nil {
				return
			}
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			resp, err := pbcatalog.NewCatalogServiceClient(cc).RaftStats(rctx, &pbcatalog.RaftStatsRequest{})
			if err != nil {
				c.log.Debug("autopilot: raft stats", "id", s.ID, "err", err)
				return
			}
			rs := raftStats{lastContact: -1, lastTerm: resp.GetLastTerm(), lastIndex: resp.GetLastIndex()}
			if ms := resp.GetLastContactMs(); ms >= 0 {
				rs.lastContact = time.Duration(ms) * time.Millisecond
			}
			mu.Lock()
			out[s.ID] = rs
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// RaftStats answers the leader's autopilot with this server's raft view
// (with TLS, to servers only).
func (s *catalogServer) RaftStats(ctx context.Context, _ *pbcatalog.RaftStatsRequest) (*pbcatalog.RaftStatsResponse, error) {
	if err := s.c.authorizeCall(ctx, "RaftStats", true, false); err != nil {
		return nil, err
	}
	rs := s.c.localRaftStats()
	ms := int64(-1)
	if rs.lastContact >= 0 {
		ms = rs.lastContact.Milliseconds()
	}
	return &pbcatalog.RaftStatsResponse{LastContactMs: ms, LastTerm: rs.lastTerm, LastIndex: rs.lastIndex}, nil
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
