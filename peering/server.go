package peering

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/ca"
)

// Server is the peering controller of one node. On servers it owns the
// cluster CA's bootstrap, the acceptor's gRPC services and, on the leader,
// the dialer's streams; on clients it forwards management calls.
type Server struct {
	cfg     Config
	log     *slog.Logger
	tracker *tracker
	// held is what each peering's importer holds (see resume.go).
	held *heldDigests
	ca   *ca.CA
	cert serverCert

	// streams holds the open replication stream of each peering (at most
	// one per peering ID), on the leader.
	streams *streamRegistry
	metrics *metrics
	// maxQueuedControl bounds the control messages queued for a peer
	// (defaultMaxQueuedControl; tests lower it).
	maxQueuedControl int
	// attempts rate-limits the secret checks peers drive, per peering ID.
	attempts *attemptLimiter

	// leaderMu guards leaderCtx: the context of the current leadership, nil
	// while this server does not lead (or before its leader routines ran).
	// The acceptor's streams end with it.
	leaderMu  sync.Mutex
	leaderCtx context.Context

	// ctx ends with Close; every leader routine's context ends with it too.
	// routinesMu guards closed and the Add side of routines, so Close's
	// Wait never races a routine starting.
	ctx        context.Context
	cancel     context.CancelFunc
	routinesMu sync.Mutex
	started    bool
	closed     bool
	routines   sync.WaitGroup
}

// New validates cfg and returns the controller, its CA and metrics
// allocated; it starts nothing. Start registers its leader routines, Close
// ends them.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "peering"),
		tracker: newTracker(cfg.Now), held: newHeldDigests(),
		streams: newStreamRegistry(),

		maxQueuedControl: defaultMaxQueuedControl,
		attempts:         newAttemptLimiter(cfg.SecretAttemptRate, cfg.SecretAttemptBurst, maxLimitedPeerings, cfg.Now),
	}
	var err error
	if s.ca, err = s.newCA(); err != nil {
		return nil, fmt.Errorf("peering: %w", err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.metrics = newMetrics(s)
	if cfg.Registry != nil {
		if err := s.metrics.register(cfg.Registry); err != nil {
			return nil, fmt.Errorf("peering: register metrics: %w", err)
		}
	}
	return s, nil
}

// Start registers the leader's peering work with the cluster: it runs on
// whichever server leads, and stops when leadership moves or at Close. It
// fails after Close or a second time.
func (s *Server) Start() error {
	s.routinesMu.Lock()
	defer s.routinesMu.Unlock()
	switch {
	case s.closed:
		return errors.New("peering: closed")
	case s.started:
		return errors.New("peering: already started")
	}
	s.started = true
	s.cfg.Cluster.AddLeaderRoutine("peering-leadership", s.routine(s.holdLeadership))
	s.cfg.Cluster.AddLeaderRoutine("peering-ca", s.routine(s.ca.KeepBootstrapping))
	s.cfg.Cluster.AddLeaderRoutine("peering-dialer", s.routine(s.dialerLoop))
	s.cfg.Cluster.AddLeaderRoutine("peering-deletion", s.routine(s.deletionLoop))
	s.cfg.Cluster.AddLeaderRoutine("peering-secret-rotation", s.routine(s.rotationLoop))
	return nil
}

// Close ends the leader's peering work (the dialer's streams, the CA's
// bootstrap, deletions, and with the leadership's context the acceptor's
// streams) and waits, within ctx, for those routines to return. Later
// leaderships start none. It is idempotent.
func (s *Server) Close(ctx context.Context) error {
	s.routinesMu.Lock()
	s.closed = true
	s.routinesMu.Unlock()
	s.cancel()
	done := make(chan struct{})
	go func() { s.routines.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("peering: wait for the leader routines: %w", ctx.Err())
	}
}

// routine runs fn as a leader routine whose context also ends at Close,
// counted so Close can wait for it.
func (s *Server) routine(fn func(context.Context)) catalog.LeaderRoutine {
	return func(lctx context.Context) {
		s.routinesMu.Lock()
		if s.closed {
			s.routinesMu.Unlock()
			return
		}
		s.routines.Add(1)
		s.routinesMu.Unlock()
		defer s.routines.Done()
		ctx, cancel := context.WithCancel(lctx)
		defer cancel()
		stop := context.AfterFunc(s.ctx, cancel)
		defer stop()
		fn(ctx)
	}
}

// holdLeadership publishes the leadership's context for the acceptor's
// stream handlers, which are not leader routines but must end with it.
func (s *Server) holdLeadership(ctx context.Context) {
	// What another leader imported meanwhile is not known here.
	s.held.clear()
	defer s.held.clear()
	s.leaderMu.Lock()
	s.leaderCtx = ctx
	s.leaderMu.Unlock()
	<-ctx.Done()
	s.leaderMu.Lock()
	if s.leaderCtx == ctx {
		s.leaderCtx = nil
	}
	s.leaderMu.Unlock()
}

// leadership returns the current leadership's context, or nil.
func (s *Server) leadership() context.Context {
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	if s.leaderCtx == nil || s.leaderCtx.Err() != nil {
		return nil
	}
	return s.leaderCtx
}

func (s *Server) datacenter() string { return s.cfg.Cluster.Config().Datacenter }

// requireServer fails on client nodes, which hold no peering state.
func (s *Server) requireServer() (*state.Store, error) {
	st := s.cfg.Cluster.Store()
	if st == nil {
		return nil, fmt.Errorf("peering: this call needs a server: %w", catalog.ErrNoServers)
	}
	return st, nil
}

// updatePeering rewrites a peering row read fresh from the store when f
// reports a change. Rows being deleted are left alone: their state is the
// deletion routine's.
func (s *Server) updatePeering(ctx context.Context, id string, f func(p *state.Peering) bool) error {
	_, p, err := s.cfg.Cluster.Store().PeeringByID(nil, id)
	if err != nil {
		return err
	}
	if p == nil {
		return state.ErrPeeringNotFound
	}
	if p.State == state.PeeringDeleting {
		return nil
	}
	cp := *p
	if !f(&cp) {
		return nil
	}
	_, err = s.apply(ctx, &catalog.Command{Type: catalog.CmdPeeringWrite, Peering: &state.PeeringWriteRequest{Peering: &cp}})
	if err != nil {
		return fmt.Errorf("write peering %q: %w", p.Name, err)
	}
	return nil
}

// apply commits a write through the cluster, giving up when ctx ends.
//
// Cluster.Apply can wait forever for a raft future that was committed
// while raft shut down (hashicorp/raft answers such a future never); the
// leader routines and streams must still return once their context ends,
// so the wait happens in a goroutine that is abandoned then.
func (s *Server) apply(ctx context.Context, cmd *catalog.Command) (*catalog.ApplyResult, error) {
	type result struct {
		res *catalog.ApplyResult
		err error
	}
	ch := make(chan result, 1)
	go func() {
		res, err := s.cfg.Cluster.Apply(ctx, cmd)
		ch <- result{res, err}
	}()
	select {
	case r := <-ch:
		return r.res, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", cmd.Type, context.Cause(ctx))
	}
}
