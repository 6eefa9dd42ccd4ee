package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/peerd/peerd/catalog/pbcatalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/nodetls"
)

// Errors a write can fail with before it reaches the store.
var (
	// ErrNoLeader means no raft leader is known (yet): the cluster is
	// electing one, or has lost quorum. Retry, or restore quorum.
	ErrNoLeader = errors.New("no cluster leader")
	// ErrNoServers means a client node knows no live server to send writes to.
	ErrNoServers = errors.New("no known peerd servers")
	// ErrShutdown means the cluster member is shutting down.
	ErrShutdown = errors.New("cluster member is shutting down")
)

// MemberStatus is a gossip member's state, numbered as Consul's API does.
type MemberStatus int

const (
	StatusNone MemberStatus = iota
	StatusAlive
	StatusLeaving
	StatusLeft
	StatusFailed
)

func (s MemberStatus) String() string {
	switch s {
	case StatusAlive:
		return "alive"
	case StatusLeaving:
		return "leaving"
	case StatusLeft:
		return "left"
	case StatusFailed:
		return "failed"
	}
	return "none"
}

// Member is a node of the gossip pool as this node sees it.
type Member struct {
	Name   string
	Addr   string
	Port   int
	Status MemberStatus
	Meta   NodeMeta
}

// NodeMeta is what every node advertises about itself in the gossip pool.
type NodeMeta struct {
	ID         string `json:"id"`
	Role       string `json:"role"` // "server" or "client"
	Datacenter string `json:"dc"`
	Build      string `json:"build,omitempty"`
	// RaftAddr is a server's raft address.
	RaftAddr string `json:"raft,omitempty"`
	GRPCAddr string `json:"grpc,omitempty"`
	// GRPCTLSAddr is where a server serves the peering stream (TLS).
	GRPCTLSAddr string `json:"grpc_tls,omitempty"`
	HTTPAddr    string `json:"http,omitempty"`
	// Leaving is gossiped just before a graceful leave, so the other nodes
	// can tell a leave from a failure.
	Leaving bool `json:"leaving,omitempty"`
}

// Cluster is this node's membership in the cluster and, on servers, its share
// of the replicated state. Writes go through Apply from any node; reads go to
// Store on servers.
type Cluster struct {
	cfg    Config
	log    *slog.Logger
	timing Timing
	meta   NodeMeta

	ml     *memberlist.Memberlist
	events chan memberlist.NodeEvent
	// subs are the MemberEvents channels, each with room for one wake-up.
	subsMu sync.Mutex
	subs   map[chan struct{}]struct{}
	// leaderObs receives raft's leader changes (servers only).
	leaderObs      chan raft.Observation
	leaderObserver *raft.Observer
	// nodes and state record every member seen and how it last changed, so
	// failed and left members can still be listed.
	mu    sync.Mutex
	nodes map[string]*memberlist.Node
	state map[string]MemberStatus
	// gossipPort is the port memberlist bound (chosen by it when 0).
	gossipPort int

	// keyring is the gossip keyring (keyring.go); keyringMu serialises its
	// changes and guards keyringPending, the Keyring calls waiting for
	// replies by request ID. keyringInbox carries keyring messages from
	// gossip's NotifyMsg to keyringMessages.
	keyring        *keyring
	keyringMu      sync.Mutex
	keyringSeq     atomic.Uint64
	keyringPending map[uint64]chan KeyringResult
	keyringInbox   chan []byte

	// routines run during each leadership; leadership is the current one.
	routinesMu sync.Mutex
	routines   []namedRoutine
	leadership *leadership

	// Server-only.
	store     *state.Store
	raft      *raft.Raft
	stream    raft.StreamLayer
	transport *raft.NetworkTransport
	closers   []func() error

	conns   *connPool
	metrics *clusterMetrics
	// ap is the leader's autopilot bookkeeping (servers only).
	ap *autopilot

	// mirror serves Watch (servers); view is what View returns: the store on
	// a server, a copy kept in sync from a server on a client (mirror.go).
	mirror *mirrorSource
	view   *mirrorView

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New validates cfg and allocates the member; it opens no socket and starts
// no goroutine. Start brings it up; Close stops it.
func New(cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("catalog config: %w", err)
	}
	l := cfg.Logger
	if l == nil {
		l = slog.Default()
	}
	c := &Cluster{
		cfg:    cfg,
		log:    l.With("node", cfg.NodeName),
		timing: cfg.timing(),
		events: make(chan memberlist.NodeEvent, 1024),
		subs:   map[chan struct{}]struct{}{},
		state:  map[string]MemberStatus{},
		nodes:  map[string]*memberlist.Node{},

		keyringPending: map[uint64]chan KeyringResult{},
		keyringInbox:   make(chan []byte, keyringInboxSize),
	}
	if c.cfg.Refusals == nil {
		c.cfg.Refusals = NewRefusalCounter()
	}
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = grpcDialCredentials(cfg.TLS)
	}
	c.conns = newConnPool(creds)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.meta = NodeMeta{
		ID: cfg.NodeID, Role: "client", Datacenter: cfg.datacenter(), Build: cfg.Build,
		GRPCAddr: cfg.GRPCAddr, GRPCTLSAddr: cfg.GRPCTLSAddr, HTTPAddr: cfg.HTTPAddr,
	}
	if cfg.Server {
		c.meta.Role = "server"
		store, err := state.NewStore()
		if err != nil {
			return nil, fmt.Errorf("create the state store: %w", err)
		}
		c.store = store
		c.ap = &autopilot{}
	}
	return c, nil
}

// Start opens the listeners (raft on servers, gossip, the mirror) and
// starts the background work: joining RetryJoin and, on servers,
// bootstrapping, the leader loop and the leader observer. It returns once
// the listeners are up. If it fails, what it opened is closed again; Close
// may still be called. Start may be called once.
func (c *Cluster) Start() error {
	if c.ctx.Err() != nil {
		return ErrShutdown
	}
	if c.cfg.TLS != nil && c.store != nil {
		c.cfg.TLS.SetRevoked(c.NodeRevoked) // before raft accepts a handshake
	}
	if c.cfg.Server {
		if err := c.startRaft(); err != nil {
			_ = c.stop()
			return err
		}
	}
	if err := c.startGossip(); err != nil {
		_ = c.stop()
		return err
	}
	c.metrics = newClusterMetrics(c)
	if err := c.startMirror(); err != nil {
		_ = c.stop()
		return err
	}
	if c.cfg.TLS != nil && c.store == nil {
		c.cfg.TLS.SetRevoked(c.NodeRevoked)
	}
	c.startRejoin()
	c.wg.Add(2)
	go func() { defer c.wg.Done(); c.joinLoop() }()
	go func() { defer c.wg.Done(); c.keyringMessages() }()
	if c.cfg.Server {
		c.AddLeaderRoutine("virtual-ips", c.virtualIPLoop)
		c.AddLeaderRoutine("autopilot", c.autopilotLoop)
		if c.cfg.ACL.Enabled {
			c.AddLeaderRoutine("acl-builtins", c.aclLeader)
		}
		c.wg.Add(3)
		go func() { defer c.wg.Done(); c.bootstrapLoop() }()
		go func() { defer c.wg.Done(); c.leaderLoop() }()
		go func() { defer c.wg.Done(); c.watchLeader() }()
	}
	return nil
}

func (c *Cluster) startRaft() error {
	t := c.timing
	bind := net.JoinHostPort(c.cfg.bindAddr(), strconv.Itoa(c.cfg.ServerPort))
	adv, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(c.cfg.advertiseAddr(), strconv.Itoa(c.cfg.ServerPort)))
	if err != nil {
		return fmt.Errorf("resolve raft advertise address: %w", err)
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return fmt.Errorf("listen for raft on %s: %w", bind, err)
	}
	adv.Port = ln.Addr().(*net.TCPAddr).Port
	c.stream = &tcpStreamLayer{ln: ln, advertise: adv}
	if c.cfg.TLS != nil {
		c.stream = newTLSStreamLayer(ln, adv, c.cfg.TLS, func(remote net.Addr, err error) {
			c.handshakeRefused(ListenerRaft, remote, err)
		})
	}
	c.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: c.stream, MaxPool: 3, Timeout: 10 * time.Second, Logger: hclogFor(c.log, "raft-net"),
	})
	c.closers = append(c.closers, c.transport.Close)
	c.meta.RaftAddr = adv.String()

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.cfg.NodeName)
	rc.Logger = hclogFor(c.log, "raft")
	rc.HeartbeatTimeout, rc.ElectionTimeout = t.RaftHeartbeatTimeout, t.RaftElectionTimeout
	rc.LeaderLeaseTimeout, rc.CommitTimeout = t.RaftLeaderLease, t.RaftCommitTimeout

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if c.cfg.InMemory {
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
	} else {
		dir := filepath.Join(c.cfg.DataDir, "raft")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create raft directory: %w", err)
		}
		bolt, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
		if err != nil {
			return fmt.Errorf("open raft store: %w", err)
		}
		c.closers = append(c.closers, bolt.Close)
		cache, err := raft.NewLogCache(512, bolt)
		if err != nil {
			return fmt.Errorf("create raft log cache: %w", err)
		}
		fss, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclogFor(c.log, "raft-snapshot"))
		if err != nil {
			return fmt.Errorf("open raft snapshots: %w", err)
		}
		logs, stable, snaps = cache, bolt, fss
	}
	r, err := raft.NewRaft(rc, &fsm{store: c.store, secrets: c.cfg.Secrets}, logs, stable, snaps, c.transport)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	c.raft = r
	c.observeLeader()
	return nil
}

func (c *Cluster) startGossip() error {
	t := c.timing
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.cfg.NodeName
	mc.BindAddr = c.cfg.bindAddr()
	mc.BindPort = c.cfg.SerfPort
	mc.AdvertiseAddr = c.cfg.advertiseAddr()
	mc.ProbeInterval, mc.ProbeTimeout = t.GossipProbeInterval, t.GossipProbeTimeout
	mc.SuspicionMult, mc.GossipInterval = t.GossipSuspicionMult, t.GossipInterval
	mc.Logger = stdlogFor(c.log)
	kr, err := c.openKeyring()
	if err != nil {
		return err
	}
	c.keyring, mc.Keyring = kr, kr.ring
	mc.Delegate = &gossipDelegate{c: c}
	mc.Events = &gossipEvents{c: c}
	// Advertise the port gossip listens on: memberlist's AdvertisePort
	// defaults to 7946 whatever BindPort is. With BindPort 0 memberlist
	// picks one free port for TCP and UDP and sets AdvertisePort to it.
	mc.AdvertisePort = mc.BindPort
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("start gossip on %s:%d: %w", mc.BindAddr, mc.BindPort, err)
	}
	c.ml = ml
	// Read once, before any other goroutine can touch the node.
	c.gossipPort = int(ml.LocalNode().Port)
	return nil
}

// gossipDelegate advertises this node's metadata.
type gossipDelegate struct{ c *Cluster }

func (d *gossipDelegate) NodeMeta(limit int) []byte {
	d.c.mu.Lock()
	b, _ := json.Marshal(d.c.meta)
	d.c.mu.Unlock()
	if len(b) > limit {
		return nil
	}
	return b
}

// NotifyMsg hands keyring messages (the only user messages) to
// keyringMessages without blocking gossip's receive loop.
func (d *gossipDelegate) NotifyMsg(b []byte) {
	if len(b) < 2 || (b[0] != keyringMsgRequest && b[0] != keyringMsgReply) {
		return
	}
	select {
	case d.c.keyringInbox <- slices.Clone(b):
	default:
		d.c.log.Warn("drop a keyring message from gossip: too many waiting")
	}
}

func (d *gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(join bool) []byte                { return nil }
func (d *gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

// gossipEvents records how members came and went, and wakes the leader.
type gossipEvents struct{ c *Cluster }

func (e *gossipEvents) NotifyJoin(n *memberlist.Node) { e.record(n, StatusAlive) }
func (e *gossipEvents) NotifyUpdate(n *memberlist.Node) {
	e.record(n, StatusAlive)
}
func (e *gossipEvents) NotifyLeave(n *memberlist.Node) {
	// memberlist reports both a graceful leave and a failure here, and does
	// not say which: a leaving node first gossips metadata with Leaving set.
	// Metadata that does not parse counts as not leaving: record has
	// already logged and counted it when it arrived.
	meta, _ := ParseNodeMeta(n.Meta)
	st := StatusFailed
	if meta.Leaving {
		st = StatusLeft
	}
	e.record(n, st)
}

func (e *gossipEvents) record(n *memberlist.Node, st MemberStatus) {
	if _, err := ParseNodeMeta(n.Meta); err != nil && n.Name != e.c.cfg.NodeName {
		e.c.cfg.Refusals.Refused(ListenerGossip, ReasonBadMeta)
		e.c.log.Warn("refused a member's metadata: it is treated as a node without role or addresses",
			"member", n.Name, "addr", n.Address(), "err", err)
	}
	cp := *n
	cp.Meta, cp.Addr = slices.Clone(n.Meta), slices.Clone(n.Addr)
	e.c.mu.Lock()
	e.c.state[n.Name] = st
	e.c.nodes[n.Name] = &cp
	e.c.mu.Unlock()
	select {
	case e.c.events <- memberlist.NodeEvent{Node: n}:
	default: // the periodic reconcile catches up
	}
	e.c.notifyMembers()
}

// MemberEvents returns a channel that receives a value after every change
// of the gossip pool (a member joins, changes its metadata, leaves or
// fails) and, on a server, of the raft leader. Wake-ups are coalesced: the
// channel holds at most one, so a slow reader sees one value for several
// changes and reads Members, Servers or Leader afresh. The channel is
// closed when ctx ends or the cluster member shuts down.
func (c *Cluster) MemberEvents(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	c.subsMu.Lock()
	c.subs[ch] = struct{}{}
	c.subsMu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
		case <-c.ctx.Done():
		}
		c.subsMu.Lock()
		delete(c.subs, ch)
		c.subsMu.Unlock()
		close(ch)
	}()
	return ch
}

// notifyMembers wakes every MemberEvents channel without blocking: memberlist
// calls the event delegate from its own goroutines and must not wait on a
// reader.
func (c *Cluster) notifyMembers() {
	c.subsMu.Lock()
	defer c.subsMu.Unlock()
	for ch := range c.subs {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// observeLeader registers a raft observer of leader changes (servers);
// watchLeader relays them.
func (c *Cluster) observeLeader() {
	c.leaderObs = make(chan raft.Observation, 16)
	c.leaderObserver = raft.NewObserver(c.leaderObs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	c.raft.RegisterObserver(c.leaderObserver)
}

// watchLeader wakes the MemberEvents channels whenever raft observes a new
// leader (or none), until the cluster member shuts down.
func (c *Cluster) watchLeader() {
	defer c.raft.DeregisterObserver(c.leaderObserver)
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.leaderObs:
			c.notifyMembers()
		}
	}
}

// Members returns every node of the gossip pool this node knows, including
// failed and left ones, sorted by name. It reads the copies recorded from
// memberlist's events: the nodes memberlist's own Members() returns point
// into state it keeps changing.
func (c *Cluster) Members() []Member {
	type seen struct {
		n  memberlist.Node
		st MemberStatus
	}
	c.mu.Lock()
	all := make([]seen, 0, len(c.nodes))
	for name, n := range c.nodes {
		all = append(all, seen{*n, c.state[name]})
	}
	c.mu.Unlock()
	out := make([]Member, 0, len(all))
	for _, m := range all {
		out = append(out, c.member(&m.n, m.st))
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (c *Cluster) member(n *memberlist.Node, st MemberStatus) Member {
	// Refused metadata (see record) leaves the member without role or
	// addresses: nothing connects to what it claims.
	meta, _ := ParseNodeMeta(n.Meta)
	if n.Name == c.cfg.NodeName {
		meta = c.localMeta()
	}
	return Member{Name: n.Name, Addr: n.Addr.String(), Port: int(n.Port), Status: st, Meta: meta}
}

func (c *Cluster) localMeta() NodeMeta {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.meta
}

// LocalMember returns this node.
func (c *Cluster) LocalMember() Member {
	return Member{Name: c.cfg.NodeName, Addr: c.cfg.advertiseAddr(), Port: c.gossipPort, Status: StatusAlive, Meta: c.localMeta()}
}

// GossipAddr returns the gossip address other nodes join.
func (c *Cluster) GossipAddr() string {
	return net.JoinHostPort(c.cfg.advertiseAddr(), strconv.Itoa(c.gossipPort))
}

// Join joins the gossip pool through any of addrs and returns how many nodes
// answered.
func (c *Cluster) Join(addrs ...string) (int, error) {
	n, err := c.ml.Join(addrs)
	if err != nil {
		return n, fmt.Errorf("join %v: %w", addrs, err)
	}
	return n, nil
}

func (c *Cluster) joinLoop() {
	if len(c.cfg.RetryJoin) == 0 {
		return
	}
	for {
		n, err := c.Join(c.cfg.RetryJoin...)
		if err == nil && n > 0 {
			c.log.Info("joined cluster", "contacted", n)
			return
		}
		c.log.Warn("join failed; retrying", "addrs", c.cfg.RetryJoin, "err", err, "in", c.cfg.RetryJoinInterval)
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(c.cfg.RetryJoinInterval):
		}
	}
}

// IsServer reports whether this node holds the replicated state.
func (c *Cluster) IsServer() bool { return c.raft != nil }

// Store returns the replicated state store (nil on client nodes).
func (c *Cluster) Store() *state.Store { return c.store }

// Config returns the configuration the cluster member was started with.
func (c *Cluster) Config() Config { return c.cfg }

// IsLeader reports whether this node is the raft leader.
func (c *Cluster) IsLeader() bool {
	return c.raft != nil && c.raft.State() == raft.Leader
}

// Leader returns the leader's raft address, or "" if none is known. On a
// client it asks the servers' metadata: the address every server agrees on.
func (c *Cluster) Leader() string {
	if c.raft != nil {
		addr, _ := c.raft.LeaderWithID()
		return string(addr)
	}
	m, ok := c.LeaderMember()
	if !ok {
		return ""
	}
	return m.Meta.RaftAddr
}

// LeaderMember returns the member that is raft leader, if known (servers
// only: a client does not track the leader).
func (c *Cluster) LeaderMember() (Member, bool) {
	if c.raft != nil {
		_, id := c.raft.LeaderWithID()
		if id == "" {
			return Member{}, false
		}
		for _, m := range c.Members() {
			if m.Name == string(id) && m.Status == StatusAlive {
				return m, true
			}
		}
		return Member{}, false
	}
	// A client does not track the leader: it relays to any live server,
	// which does.
	return Member{}, false
}

// Peers returns the raft addresses of the voters (servers only).
func (c *Cluster) Peers() ([]string, error) {
	if c.raft == nil {
		return nil, errors.New("peers are known to servers only")
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("read raft configuration: %w", err)
	}
	var out []string
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			out = append(out, string(s.Address))
		}
	}
	slices.Sort(out)
	return out, nil
}

// Servers returns the live server members of this datacenter.
func (c *Cluster) Servers() []Member {
	var out []Member
	for _, m := range c.Members() {
		if m.Status == StatusAlive && m.Meta.Role == "server" && m.Meta.Datacenter == c.meta.Datacenter {
			out = append(out, m)
		}
	}
	return out
}

// Apply commits a write to the replicated state from any node: applied
// directly on the leader, forwarded to the leader from a follower, and sent to
// a server from a client. It retries while a leader is being elected, up to
// the configured ApplyTimeout.
func (c *Cluster) Apply(ctx context.Context, cmd *Command) (*ApplyResult, error) {
	data, err := cmd.Encode()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timing.ApplyTimeout)
	defer cancel()
	start := time.Now()
	res, err := c.applyRetry(ctx, data, false)
	c.metrics.observeApply(string(cmd.Type), start, err)
	return res, err
}

func (c *Cluster) applyRetry(ctx context.Context, data []byte, forwarded bool) (*ApplyResult, error) {
	backoff := 20 * time.Millisecond
	for {
		res, err := c.applyOnce(ctx, data, forwarded)
		if err == nil || !retryable(err) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (waited %s): %w", ErrNoLeader, c.timing.ApplyTimeout, err)
		case <-c.ctx.Done():
			return nil, ErrShutdown
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

func retryable(err error) bool {
	if refusal(err) {
		return false
	}
	return errors.Is(err, ErrNoLeader) || errors.Is(err, ErrNoServers) ||
		errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
		errors.Is(err, raft.ErrLeadershipTransferInProgress) || errors.Is(err, errForward)
}

var errForward = errors.New("forward write")

func (c *Cluster) applyOnce(ctx context.Context, data []byte, forwarded bool) (*ApplyResult, error) {
	if c.raft != nil && c.raft.State() == raft.Leader {
		if o, ok := ctx.Value(originKey{}).(origin); ok && c.revokedOrigin(o) {
			c.cfg.Refusals.Refused(ListenerGRPC, nodetls.ReasonRevoked)
			c.log.Warn("refused a write relayed for a revoked node", "listener", ListenerGRPC, "node", o.node)
			return nil, status.Errorf(codes.PermissionDenied, "the certificate of node %s was revoked", o.node)
		}
		return c.applyLocal(ctx, data)
	}
	if c.raft != nil && forwarded {
		// We were sent this as the leader and are not: let the sender retry.
		return nil, raft.ErrNotLeader
	}
	target, err := c.writeTarget()
	if err != nil {
		return nil, err
	}
	return c.forward(ctx, target, data, c.raft != nil)
}

// writeTarget is where a write (or a call only the leader answers) goes from
// this node: the leader from a server, any live server from a client (which
// relays to its leader).
func (c *Cluster) writeTarget() (Member, error) {
	if c.raft != nil {
		m, ok := c.LeaderMember()
		if !ok {
			return Member{}, ErrNoLeader
		}
		return m, nil
	}
	servers := c.Servers()
	if len(servers) == 0 {
		return Member{}, ErrNoServers
	}
	return servers[randIndex(len(servers))], nil
}

func (c *Cluster) applyLocal(ctx context.Context, data []byte) (*ApplyResult, error) {
	timeout := c.timing.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if c.cfg.Secrets != nil {
		data = c.cfg.Secrets.Seal(data) // the log on disk and on the wire holds ciphertext only
	}
	f := c.raft.Apply(data, timeout)
	// f.Error() can block past a raft shutdown that races the commit;
	// wait for it only as long as the caller and the cluster live.
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return nil, fmt.Errorf("raft apply: %w", err)
		}
	case <-ctx.Done():
		return nil, fmt.Errorf("raft apply: %w", ctx.Err())
	case <-c.ctx.Done():
		return nil, ErrShutdown
	}
	res, ok := f.Response().(*ApplyResult)
	if !ok {
		return nil, fmt.Errorf("raft apply: unexpected response %T", f.Response())
	}
	if res.Err != "" {
		return res, &ApplyError{Msg: res.Err}
	}
	return res, nil
}

// ApplyError is a write the state store refused: the request was wrong, not
// the cluster (e.g. a check for a service that does not exist).
type ApplyError struct{ Msg string }

func (e *ApplyError) Error() string { return e.Msg }

func (c *Cluster) forward(ctx context.Context, to Member, data []byte, forwarded bool) (*ApplyResult, error) {
	if to.Meta.GRPCAddr == "" {
		return nil, fmt.Errorf("%w: server %s advertises no gRPC address", errForward, to.Name)
	}
	conn, err := c.conns.get(to.Meta.GRPCAddr)
	if err != nil {
		return nil, fmt.Errorf("%w to %s: %w", errForward, to.Name, err)
	}
	req := &pbcatalog.ApplyRequest{Command: data, Forwarded: forwarded}
	if o, ok := ctx.Value(originKey{}).(origin); ok {
		req.OriginNode, req.OriginSignedUnixNano = o.node, o.signed.UnixNano()
	}
	resp, err := pbcatalog.NewCatalogServiceClient(conn).Apply(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("%w to %s: %w", errForward, to.Name, err)
	}
	res := &ApplyResult{Index: resp.GetIndex(), OK: resp.GetOk(), Err: resp.GetError()}
	if res.Err != "" {
		return res, &ApplyError{Msg: res.Err}
	}
	return res, nil
}

// RegisterGRPC adds the cluster-internal catalog service to s (servers only).
func (c *Cluster) RegisterGRPC(s *grpc.Server) {
	if c.raft != nil {
		pbcatalog.RegisterCatalogServiceServer(s, &catalogServer{c: c})
	}
}

type catalogServer struct {
	pbcatalog.UnimplementedCatalogServiceServer
	c *Cluster
}

var _ pbcatalog.CatalogServiceServer = (*catalogServer)(nil)

func (s *catalogServer) Apply(ctx context.Context, req *pbcatalog.ApplyRequest) (*pbcatalog.ApplyResponse, error) {
	data, err := s.c.authorizeApply(ctx, req)
	if err != nil {
		return nil, err
	}
	if o, ok := originOf(ctx, req); ok {
		ctx = context.WithValue(ctx, originKey{}, o)
	}
	res, err := s.c.applyRetry(ctx, data, req.GetForwarded())
	var ae *ApplyError
	if errors.As(err, &ae) {
		return &pbcatalog.ApplyResponse{Index: res.Index, Ok: res.OK, Error: ae.Msg}, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &pbcatalog.ApplyResponse{Index: res.Index, Ok: res.OK}, nil
}

// WaitForLeader blocks until a leader is known or ctx ends.
func (c *Cluster) WaitForLeader(ctx context.Context) error {
	return pollUntil(ctx, "wait for leader", func() bool {
		if c.raft != nil {
			addr, _ := c.raft.LeaderWithID()
			return addr != ""
		}
		return len(c.Servers()) > 0
	})
}

// pollUntil calls done every 20 ms until it reports true, or fails with
// step once ctx ends.
func pollUntil(ctx context.Context, step string, done func() bool) error {
	for !done() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", step, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// WaitCaughtUp returns once this node's view holds what the cluster had
// committed: on a client, once the mirror has synced; on the leader, once
// a barrier has applied every earlier entry; on a follower, once the
// leader has been heard from since the call and everything it said was
// committed is applied. A restarted server replays its log only after an
// election, so callers that delete what the view lacks (the dataplane's
// sync) wait for this rather than for a leader alone.
func (c *Cluster) WaitCaughtUp(ctx context.Context) error {
	if err := c.WaitForLeader(ctx); err != nil {
		return err
	}
	if c.raft == nil {
		select {
		case <-c.view.synced:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("wait for the mirror: %w", ctx.Err())
		}
	}
	since := time.Now()
	return pollUntil(ctx, "wait for the raft log to apply", func() bool {
		if c.raft.State() == raft.Leader {
			return c.raft.Barrier(c.timing.ApplyTimeout).Error() == nil
		}
		return c.raft.LastContact().After(since) && c.raft.AppliedIndex() >= c.raft.CommitIndex()
	})
}

// Leave announces a graceful leave, so the leader removes this node's
// registrations rather than marking them critical: a leader first hands
// leadership over, then the member gossips its leave intent and leaves the
// pool (each step bounded by ctx as well as by its own timeout, 1 s and 2 s).
// The member keeps running until Close; call Close next. Before Start or
// after Close, Leave fails with ErrShutdown.
func (c *Cluster) Leave(ctx context.Context) error {
	if c.ctx.Err() != nil || c.ml == nil {
		return ErrShutdown
	}
	if c.IsLeader() && len(c.Servers()) > 1 {
		if err := c.raft.LeadershipTransfer().Error(); err != nil {
			c.log.Warn("leadership transfer before leaving failed", "err", err)
		}
	}
	c.mu.Lock()
	c.meta.Leaving = true
	c.mu.Unlock()
	if err := c.ml.UpdateNode(within(ctx, time.Second)); err != nil {
		c.log.Warn("announce leave intent", "err", err)
	}
	if err := c.ml.Leave(within(ctx, 2*time.Second)); err != nil {
		return fmt.Errorf("leave gossip pool: %w", err)
	}
	return nil
}

// within is d, or less if ctx's deadline comes sooner.
func within(ctx context.Context, d time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(0, min(d, time.Until(dl)))
	}
	return d
}

// Close stops this member without leaving (the others see it fail; call
// Leave first for a graceful leave): it shuts gossip, raft and its stores
// down and waits, within ctx, for its goroutines. It is idempotent: a
// second call waits the same way and returns nil.
func (c *Cluster) Close(ctx context.Context) error {
	err := c.stop()
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("wait for the cluster member's goroutines: %w", ctx.Err()))
	}
	return err
}

// stop cancels the member's context and closes what Start opened, once;
// later calls return nil.
func (c *Cluster) stop() error {
	var err error
	c.once.Do(func() { err = c.closeAll() })
	return err
}

func (c *Cluster) closeAll() error {
	var errs []error
	if c.cancel != nil {
		c.cancel()
	}
	if c.ml != nil {
		if err := c.ml.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("stop gossip: %w", err))
		}
	}
	if c.raft != nil {
		if err := c.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("stop raft: %w", err))
		}
	}
	for i := len(c.closers) - 1; i >= 0; i-- {
		if err := c.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	c.conns.close()
	return errors.Join(errs...)
}

// connPool keeps one gRPC connection per server address, each dialed with
// creds.
type connPool struct {
	creds credentials.TransportCredentials
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newConnPool(creds credentials.TransportCredentials) *connPool {
	return &connPool{creds: creds, conns: map[string]*grpc.ClientConn{}}
}

func (p *connPool) get(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc, ok := p.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(p.creds))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	p.conns[addr] = cc
	return cc, nil
}

func (p *connPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, cc := range p.conns {
		_ = cc.Close()
		delete(p.conns, addr)
	}
}

// LeaderConn returns a gRPC connection to the raft leader's internal gRPC
// address, for calls only the leader answers. From a client node it is a
// connection to any live server, which relays to its leader.
func (c *Cluster) LeaderConn() (*grpc.ClientConn, error) {
	target, err := c.writeTarget()
	if err != nil {
		return nil, err
	}
	if target.Meta.GRPCAddr == "" {
		return nil, fmt.Errorf("server %s advertises no gRPC address: %w", target.Name, ErrNoServers)
	}
	return c.conns.get(target.Meta.GRPCAddr)
}
