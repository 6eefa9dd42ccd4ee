package peering

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
)

// deletionLoop is the leader routine that finishes deletions: a DELETING
// peering has its stream told (Terminated), its imports purged in batches
// and then its row removed; a TERMINATED one (deleted by the peer) has its
// imports purged and keeps its row for the operator to delete.
func (s *Server) deletionLoop(ctx context.Context) {
	st := s.cfg.Cluster.Store()
	for {
		ws := memdb.NewWatchSet()
		_, ps, err := st.Peerings(ws)
		retry := err != nil
		if err != nil {
			s.log.Error("list peerings to delete", "err", err)
		}
		for _, p := range ps {
			var err error
			switch p.State {
			case state.PeeringDeleting:
				err = s.finishDeletion(ctx, p)
			case state.PeeringTerminated:
				err = s.purgeImports(ctx, p)
			default:
				continue
			}
			if err != nil && ctx.Err() == nil {
				s.log.Warn("delete peering; retrying", "peer", p.Name, "err", err)
				s.tracker.failed(p.ID, err)
				retry = true
			}
		}
		if retry {
			if !sleepCtx(ctx, time.Second) {
				return
			}
			continue
		}
		if err := ws.WatchCtx(ctx); err != nil {
			return
		}
	}
}

// finishDeletion lets the open stream, if any, send Terminated and close,
// purges the imports and removes the row.
func (s *Server) finishDeletion(ctx context.Context, p *state.Peering) error {
	s.streams.wait(ctx, p.ID, 10*time.Second)
	if err := s.purgeImports(ctx, p); err != nil {
		return err
	}
	_, err := s.apply(ctx, &catalog.Command{Type: catalog.CmdPeeringDelete, PeeringDelete: &catalog.PeeringDeleteRequest{Name: p.Name}})
	if err != nil {
		return fmt.Errorf("delete peering %q: %w", p.Name, err)
	}
	s.tracker.forget(p.ID)
	s.held.forget(p.ID)
	s.metrics.forget(p.Name)
	s.log.Info("peering deleted", "peer", p.Name)
	return nil
}

// purgeImports removes every node imported from the peer (with its services
// and checks), PurgeBatch nodes per raft write. The stream is closed by
// then, so nothing is imported meanwhile.
func (s *Server) purgeImports(ctx context.Context, p *state.Peering) error {
	if s.streams.get(p.ID) != nil {
		s.streams.wait(ctx, p.ID, 10*time.Second)
	}
	st := s.cfg.Cluster.Store()
	total := 0
	for {
		nodes, err := st.ImportedNodes(p.Name, s.cfg.PurgeBatch)
		if err != nil {
			return fmt.Errorf("purge imports of %q: %w", p.Name, err)
		}
		if len(nodes) == 0 {
			break
		}
		reqs := make([]*state.DeregisterRequest, 0, len(nodes))
		for _, n := range nodes {
			reqs = append(reqs, &state.DeregisterRequest{Node: n, PeerName: p.Name})
		}
		if _, err := s.apply(ctx, &catalog.Command{Type: catalog.CmdDeregisterBatch, Deregisters: reqs}); err != nil {
			return fmt.Errorf("purge imports of %q (%d nodes removed so far): %w", p.Name, total, err)
		}
		total += len(nodes)
	}
	if total > 0 {
		s.tracker.setImported(p.ID, nil)
		s.log.Info("purged imports", "peer", p.Name, "nodes", total)
	}
	return nil
}
