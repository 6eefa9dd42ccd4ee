package local

// Anti-entropy: every change is written through at once, in order, and a
// full sync of the node runs periodically and when asked (Kick).

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
)

// write commits one catalog write, built (under s.mu) from the local state
// at the moment it is sent. writeMu orders every write this agent makes: a
// full sync built from older state can never land after a newer change, and
// a registration never carries check results older than ones already
// written. A failed write asks for a full sync.
func (s *State) write(ctx context.Context, build func() *catalog.Command) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	cmd := build()
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	if s.offline {
		s.Kick()
		return
	}
	if _, err := s.apply.Apply(ctx, cmd); err != nil {
		s.log.Warn("catalog write failed; anti-entropy will retry", "command", cmd.Type, "err", err)
		s.Kick()
	}
}

// Kick asks for a full sync soon (e.g. because the servers changed).
func (s *State) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// SyncNow writes the node's full local state to the catalog in one write.
func (s *State) SyncNow(ctx context.Context) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	req := &state.SyncNodeRequest{Node: s.node()}
	ids := slices.Sorted(maps.Keys(s.services))
	for _, id := range ids {
		cp := *s.services[id].Service
		req.Services = append(req.Services, &cp)
	}
	cids := slices.Sorted(maps.Keys(s.checks))
	for _, id := range cids {
		cp := *s.checks[id].Check
		req.Checks = append(req.Checks, &cp)
	}
	s.mu.Unlock()
	if _, err := s.apply.Apply(ctx, &catalog.Command{Type: catalog.CmdSyncNode, SyncNode: req}); err != nil {
		return fmt.Errorf("sync node %q: %w", s.cfg.Node.Node, err)
	}
	return nil
}

// Start starts anti-entropy: a full sync at once, then every SyncInterval,
// on Kick, and with backoff after a failure, until Close. It fails after
// Close or a second time.
func (s *State) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.ctx.Err() != nil:
		return errors.New("local state: start: closed")
	case s.started:
		return errors.New("local state: start: already started")
	}
	s.started = true
	go func() { defer close(s.done); s.run(s.ctx) }()
	return nil
}

// Close stops anti-entropy and every check and waits for them within ctx.
// The services and checks stay registered (in the catalog and StateDir);
// registering more after Close fails. It is idempotent.
func (s *State) Close(ctx context.Context) error {
	s.mu.Lock()
	s.cancel()
	started := s.started
	s.mu.Unlock()
	if started {
		select {
		case <-s.done:
		case <-ctx.Done():
			return fmt.Errorf("local state: wait for anti-entropy to stop: %w", ctx.Err())
		}
	}
	return s.runner.Close(ctx)
}

// run is anti-entropy's loop, until ctx ends.
func (s *State) run(ctx context.Context) {
	backoff := time.Second
	next := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		case <-s.kick:
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := s.SyncNow(sctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("anti-entropy sync failed; retrying", "err", err, "in", backoff)
			next = backoff
			backoff = min(backoff*2, s.cfg.SyncInterval)
			continue
		}
		backoff, next = time.Second, s.cfg.SyncInterval
	}
}
