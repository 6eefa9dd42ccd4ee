package peering

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-memdb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/peering/pbpeering"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

// Stream secret rotation. The acceptor owns the secrets: rotating (on the
// schedule of Config.StreamSecretRotation, or on demand) writes a new
// pending secret through raft, bound to the active secret's identity. The
// acceptor's leader hands it over the open stream (SecretRotation) to a
// dialer that said in its Open that it takes them; the dialer stores it
// through its raft and sends it back; the acceptor promotes it and the old
// secret stops working. The stream stays open throughout. If the stream is
// down, or either leader changes half-way, the state in raft finishes the
// job: an acceptor sends a pending rotated secret on every stream that
// opens, and a dialer that stored it opens its next stream with it, which
// promotes it as the first use of a pending secret always does (Consul's
// rule).

// Secret refusals: the calls and reasons of
// peerd_peering_secret_refusals_total, also reported to Config.Refused
// under ListenerPeering as "<call>-<reason>".
const (
	ListenerPeering = "peering"

	callExchange = "exchange"
	callStream   = "stream"

	reasonBadRequest     = "bad_request"
	reasonUnknownPeering = "unknown_peering"
	reasonInvalidSecret  = "invalid_secret"
	reasonExpired        = "expired"
	reasonRateLimited    = "rate_limited"
	reasonIdentity       = "identity"
)

// maxLimitedPeerings bounds the rate limiter's map.
const maxLimitedPeerings = 4096

// refuseSecret counts, logs and returns a refused secret check.
func (s *Server) refuseSecret(ctx context.Context, call, reason string, code codes.Code, msg string, attrs ...any) error {
	s.metrics.refusals.WithLabelValues(call, reason).Inc()
	s.cfg.refused(ListenerPeering, call+"-"+reason)
	remote := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		remote = p.Addr.String()
	}
	s.log.Warn("peering secret refused", append([]any{"call", call, "reason", reason, "remote", remote, "err", msg}, attrs...)...)
	return status.Error(code, msg)
}

// RotateStreamSecret rotates the stream secret of the acceptor peering
// name: a new pending secret, which the open stream hands to the dialer
// and which becomes the only valid one once the dialer took it. With a
// rotation already pending it changes nothing. It runs on the raft leader;
// other nodes forward the call.
func (s *Server) RotateStreamSecret(ctx context.Context, name string) error {
	if err := ValidatePeerName(name); err != nil {
		return err
	}
	if !s.cfg.Cluster.IsLeader() {
		return s.forward(ctx, func(ctx context.Context, c pbpeering.PeeringServiceClient, opts ...grpc.CallOption) error {
			_, err := c.RotateStreamSecret(ctx, &pbpeering.RotateStreamSecretRequest{PeerName: name}, opts...)
			return err
		})
	}
	st, err := s.requireServer()
	if err != nil {
		return err
	}
	_, p, err := st.Peering(nil, name)
	if err != nil {
		return err
	}
	switch {
	case p == nil:
		return notFound(name)
	case p.ShouldDial:
		return conflict("cannot rotate the stream secret of peering %q here: stream secrets are the acceptor's; rotate it in the cluster that generated the peering token", name)
	case p.State == state.PeeringDeleting || p.State == state.PeeringTerminated:
		return conflict("cannot rotate the stream secret of peering %q: it is %s", name, p.State)
	}
	if sess := s.streams.get(p.ID); sess != nil && !sess.rotation {
		return conflict("cannot rotate the stream secret of peering %q over its stream: the peer's dialer does not take rotated secrets (a Consul dialer): generate a new peering token and establish again, as with Consul", name)
	}
	return s.rotate(ctx, p)
}

// rotate writes a new pending stream secret for acceptor peering p.
func (s *Server) rotate(ctx context.Context, p *state.Peering) error {
	sec, err := s.cfg.Cluster.Store().PeeringSecrets(p.ID)
	if err != nil {
		return fmt.Errorf("rotate the stream secret of %q: read secrets: %w", p.Name, err)
	}
	if sec == nil || sec.ActiveStreamSecret == "" {
		return conflict("cannot rotate the stream secret of peering %q: %s", p.Name, state.ErrNoActiveSecret)
	}
	if sec.PendingStreamSecret != "" {
		return nil // the dialer has it, or will get it when it connects
	}
	_, err = s.apply(ctx, &catalog.Command{Type: catalog.CmdPeeringSecrets, PeeringSecrets: &state.PeeringSecretsRequest{
		Op: state.SecretsRotate, PeeringID: p.ID, New: uuid.NewString(), Now: s.cfg.Now().UnixNano(),
	}})
	if err != nil {
		return fmt.Errorf("rotate the stream secret of %q: %w", p.Name, err)
	}
	s.metrics.rotations.WithLabelValues(p.Name, "started").Inc()
	s.log.Info("stream secret rotation started", "peer", p.Name)
	return nil
}

// rotationLoop is the leader routine that rotates every acceptor
// peering's stream secret once it is StreamSecretRotation old and its
// dialer is connected and takes rotated secrets.
func (s *Server) rotationLoop(ctx context.Context) {
	period := s.cfg.StreamSecretRotation
	if period < 0 {
		return
	}
	tick := time.NewTicker(min(max(period/10, 10*time.Millisecond), time.Minute))
	defer tick.Stop()
	for {
		s.rotateDue(ctx, period)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *Server) rotateDue(ctx context.Context, period time.Duration) {
	st := s.cfg.Cluster.Store()
	_, ps, err := st.Peerings(nil)
	if err != nil {
		s.log.Error("list peerings to rotate stream secrets", "err", err)
		return
	}
	now := s.cfg.Now()
	for _, p := range ps {
		if p.ShouldDial || p.State == state.PeeringDeleting || p.State == state.PeeringTerminated {
			continue
		}
		sec, err := st.PeeringSecrets(p.ID)
		if err != nil || sec == nil || sec.ActiveStreamSecret == "" || sec.PendingStreamSecret != "" {
			continue
		}
		if now.Sub(time.Unix(0, sec.ActiveSince)) < period {
			continue
		}
		if sess := s.streams.get(p.ID); sess == nil || !sess.rotation {
			// Rotated when a dialer that takes rotated secrets is
			// connected: a Consul dialer rotates by re-establishing.
			continue
		}
		if err := s.rotate(ctx, p); err != nil && ctx.Err() == nil {
			s.log.Warn("scheduled stream secret rotation failed", "peer", p.Name, "err", err)
		}
	}
}

// offerRotations is the acceptor session's goroutine (for dialers that take
// SecretRotation) that sends every pending rotated secret to the dialer,
// each once per stream.
func (ss *session) offerRotations() {
	st := ss.srv.cfg.Cluster.Store()
	sent := ""
	for {
		ws := memdb.NewWatchSet()
		sec, err := st.PeeringSecretsWatch(ws, ss.id)
		if err != nil {
			ss.fail(fmt.Errorf("watch the stream secrets: %w", err))
			return
		}
		if sec != nil && sec.PendingRotated && sec.PendingStreamSecret != "" && sec.PendingStreamSecret != sent {
			sent = sec.PendingStreamSecret
			ss.log().Info("offering the rotated stream secret to the dialer")
			ss.out.push(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_SecretRotation{
				SecretRotation: &pbpeerstream.SecretRotation{StreamSecret: sent},
			}}, true)
		}
		if err := ws.WatchCtx(ss.ctx); err != nil {
			return
		}
	}
}

// handleRotation handles a SecretRotation: on the dialer, the acceptor's
// new secret, stored and echoed; on the acceptor, the dialer's echo, which
// promotes it.
func (ss *session) handleRotation(r *pbpeerstream.SecretRotation) error {
	s := ss.srv
	ctx, cancel := context.WithTimeout(ss.ctx, 10*time.Second)
	defer cancel()
	secret := r.GetStreamSecret()
	if !ss.dialer {
		sec, err := s.cfg.Cluster.Store().PeeringSecrets(ss.id)
		if err != nil {
			return fmt.Errorf("read the stream secrets: %w", err)
		}
		if sec != nil && state.SecretMatches(sec.ActiveStreamSecret, secret) {
			return nil // promoted already (the dialer reconnected with it)
		}
		if sec == nil || !sec.PendingRotated || !state.SecretMatches(sec.PendingStreamSecret, secret) {
			return s.refuseSecret(ss.ctx, callStream, reasonInvalidSecret, codes.PermissionDenied,
				"stream: the dialer confirmed a stream secret this cluster did not offer", "peer", ss.name)
		}
		_, err = s.apply(ctx, &catalog.Command{Type: catalog.CmdPeeringSecrets, PeeringSecrets: &state.PeeringSecretsRequest{
			Op: state.SecretsPromote, PeeringID: ss.id, Presented: secret, Now: s.cfg.Now().UnixNano(),
		}})
		if err != nil {
			return fmt.Errorf("promote the rotated stream secret: %w", err)
		}
		s.metrics.rotations.WithLabelValues(ss.name, "promoted").Inc()
		ss.log().Info("stream secret rotated: the dialer took the new secret; the old one no longer works")
		return nil
	}
	_, p, err := s.cfg.Cluster.Store().PeeringByID(nil, ss.id)
	if err != nil || p == nil {
		return fmt.Errorf("store the rotated stream secret: read the peering: %w", err)
	}
	// The dialer loop restarts a stream whose key changes; this change is
	// the stream's own.
	if ss.task != nil {
		ss.task.setKey(s.dialKeyWith(p, secret))
	}
	_, err = s.apply(ctx, &catalog.Command{Type: catalog.CmdPeeringSecrets, PeeringSecrets: &state.PeeringSecretsRequest{
		Op: state.SecretsStore, PeeringID: ss.id, New: secret,
	}})
	if err != nil {
		return fmt.Errorf("store the rotated stream secret: %w", err)
	}
	s.metrics.rotations.WithLabelValues(ss.name, "stored").Inc()
	ss.log().Info("stored the stream secret the acceptor rotated to")
	ss.out.push(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_SecretRotation{
		SecretRotation: &pbpeerstream.SecretRotation{StreamSecret: secret},
	}}, true)
	return nil
}
