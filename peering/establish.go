package peering

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/peering/pbpeering"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

// exchangeTimeout bounds the secret exchange with one acceptor address.
const exchangeTimeout = 5 * time.Second

// GenerateTokenRequest is what POST /v1/peering/token asks for.
type GenerateTokenRequest struct {
	// PeerName is the local name of the peer that will redeem the token.
	PeerName string
	// Meta replaces the peering's metadata.
	Meta map[string]string
	// ServerExternalAddresses (host:port) replace the servers' own
	// addresses in the token, and are dialed before any replicated address.
	ServerExternalAddresses []string
	// ExpiresIn bounds the token's life; zero means it does not expire.
	ExpiresIn time.Duration
}

// EstablishRequest is what POST /v1/peering/establish asks for.
type EstablishRequest struct {
	PeerName     string
	PeeringToken string
	Meta         map[string]string
}

// GenerateToken creates the acceptor's peering (PENDING), or refreshes it,
// and returns a new token for it. The new token's establishment secret
// replaces any unused earlier one; stream secrets, and so a live stream, are
// kept. It runs on the raft leader; other nodes forward the call.
func (s *Server) GenerateToken(ctx context.Context, req GenerateTokenRequest) (string, error) {
	if err := ValidatePeerName(req.PeerName); err != nil {
		return "", err
	}
	for i, a := range req.ServerExternalAddresses {
		if err := validateAddress(a); err != nil {
			return "", fmt.Errorf("%w: ServerExternalAddresses[%d]: %v", ErrInvalidRequest, i, err)
		}
	}
	if req.ExpiresIn < 0 {
		return "", fmt.Errorf("%w: the expiry %s is negative", ErrInvalidRequest, req.ExpiresIn)
	}
	if !s.cfg.Cluster.IsLeader() {
		var resp *pbpeering.GenerateTokenResponse
		err := s.forward(ctx, func(ctx context.Context, c pbpeering.PeeringServiceClient, opts ...grpc.CallOption) (err error) {
			resp, err = c.GenerateToken(ctx, &pbpeering.GenerateTokenRequest{
				PeerName: req.PeerName, Meta: req.Meta, ServerExternalAddresses: req.ServerExternalAddresses,
				ExpiresInSeconds: int64((req.ExpiresIn + time.Second - 1) / time.Second),
			}, opts...)
			return err
		})
		if err != nil {
			return "", err
		}
		return resp.GetPeeringToken(), nil
	}
	return s.generateToken(ctx, req)
}

func (s *Server) generateToken(ctx context.Context, req GenerateTokenRequest) (string, error) {
	st, err := s.requireServer()
	if err != nil {
		return "", err
	}
	_, existing, err := st.Peering(nil, req.PeerName)
	if err != nil {
		return "", err
	}
	if existing != nil {
		if existing.State == state.PeeringDeleting {
			return "", conflict("cannot generate a peering token for %q: cannot write to peering that is marked for deletion: wait until the deletion completes", req.PeerName)
		}
		if existing.ShouldDial && existing.State != state.PeeringTerminated {
			return "", conflict("cannot generate a peering token for %q: there is already an established peering with this name (this cluster dialed it); delete it first or pick another name", req.PeerName)
		}
	}
	td, err := s.trustDomain()
	if err != nil {
		return "", unavailable("generate peering token: %w", err)
	}
	_, pems, err := s.activeRoot()
	if err != nil {
		return "", unavailable("generate peering token: %w", err)
	}
	dc := s.datacenter()

	id := uuid.NewString()
	var old *state.PeeringSecrets
	if existing != nil && !existing.ShouldDial {
		id = existing.ID
		if old, err = st.PeeringSecrets(id); err != nil {
			return "", err
		}
	}

	tok := Token{
		CA:                  pems,
		ServerName:          identity.ServerName(dc, td),
		PeerID:              id,
		EstablishmentSecret: uuid.NewString(),
		Remote:              TokenRemote{Datacenter: dc},
		TrustDomain:         td.Name(),
	}
	if len(req.ServerExternalAddresses) > 0 {
		tok.ServerAddresses = slices.Clone(req.ServerExternalAddresses)
		tok.ManualServerAddresses = slices.Clone(req.ServerExternalAddresses)
	} else {
		for _, m := range s.cfg.Cluster.Servers() {
			if a := m.Meta.GRPCTLSAddr; a != "" && !slices.Contains(tok.ServerAddresses, a) {
				tok.ServerAddresses = append(tok.ServerAddresses, a)
			}
		}
		slices.Sort(tok.ServerAddresses)
		if len(tok.ServerAddresses) == 0 {
			return "", unavailable("generate peering token: no live server advertises a peering (TLS gRPC) address: set one, or pass -server-external-addresses")
		}
	}
	var expiresAt int64
	if req.ExpiresIn > 0 {
		at := s.cfg.Now().Add(req.ExpiresIn).UTC().Truncate(time.Second)
		tok.ExpiresAt = &at
		expiresAt = at.UnixNano()
	}
	encoded, err := tok.Encode()
	if err != nil {
		return "", fmt.Errorf("generate peering token: %w", err)
	}

	p := &state.Peering{ID: id, Name: req.PeerName, State: state.PeeringPending}
	if existing != nil && existing.ID == id {
		cp := *existing
		p = &cp
		if p.State != state.PeeringActive {
			p.State = state.PeeringPending
		}
		p.DeletedAt = 0
	}
	p.Meta = maps.Clone(req.Meta)
	p.ShouldDial = false
	sec := &state.PeeringSecrets{PeeringID: id, EstablishmentSecret: tok.EstablishmentSecret, EstablishmentExpiresAt: expiresAt}
	// A live stream keeps its secret; a terminated relationship's secrets
	// die with it.
	if old != nil && existing.State != state.PeeringTerminated {
		sec.PendingStreamSecret, sec.ActiveStreamSecret = old.PendingStreamSecret, old.ActiveStreamSecret
		sec.PendingIdentity, sec.ActiveIdentity, sec.ActiveSince = old.PendingIdentity, old.ActiveIdentity, old.ActiveSince
		sec.PendingRotated = old.PendingRotated
	}
	if _, err := s.cfg.Cluster.Apply(ctx, &catalog.Command{Type: catalog.CmdPeeringWrite,
		Peering: &state.PeeringWriteRequest{Peering: p, Secrets: sec}}); err != nil {
		return "", fmt.Errorf("generate peering token: store peering %q: %w", req.PeerName, err)
	}
	s.log.Info("generated peering token", "peer", req.PeerName, "peering_id", id, "addresses", tok.ServerAddresses)
	return encoded, nil
}

// Establish redeems a token on the dialer side: it exchanges the token's
// establishment secret with the acceptor for a stream secret and stores the
// peering as ESTABLISHING; the leader's dialer then opens the stream.
func (s *Server) Establish(ctx context.Context, req EstablishRequest) error {
	if err := ValidatePeerName(req.PeerName); err != nil {
		return err
	}
	if _, err := decodeToken(req.PeeringToken, s.cfg.Now()); err != nil {
		return err
	}
	if !s.cfg.Cluster.IsLeader() {
		return s.forward(ctx, func(ctx context.Context, c pbpeering.PeeringServiceClient, opts ...grpc.CallOption) error {
			_, err := c.Establish(ctx, &pbpeering.EstablishRequest{PeerName: req.PeerName, PeeringToken: req.PeeringToken, Meta: req.Meta}, opts...)
			return err
		})
	}
	return s.establish(ctx, req)
}

func (s *Server) establish(ctx context.Context, req EstablishRequest) error {
	st, err := s.requireServer()
	if err != nil {
		return err
	}
	tok, err := decodeToken(req.PeeringToken, s.cfg.Now())
	if err != nil {
		return err
	}
	td, err := s.trustDomain()
	if err != nil {
		return unavailable("establish peering: %w", err)
	}
	if tok.TrustDomain == td.Name() || strings.EqualFold(tok.ServerName, identity.ServerName(s.datacenter(), td)) {
		return &wrapped{msg: "cannot create a peering within the same cluster: the token was generated by this cluster; generate it in the other cluster", err: ErrSameCluster}
	}
	_, existing, err := st.Peering(nil, req.PeerName)
	if err != nil {
		return err
	}
	id := uuid.NewString()
	if existing != nil {
		switch {
		case existing.State == state.PeeringDeleting:
			return conflict("cannot establish peering %q: cannot write to peering that is marked for deletion: wait until the deletion completes", req.PeerName)
		case !existing.ShouldDial && existing.State != state.PeeringTerminated:
			return conflict("cannot establish peering %q: there is an existing peering expecting to be dialed (this cluster generated a token for it); delete it first or pick another name", req.PeerName)
		case existing.ShouldDial && existing.PeerID == tok.PeerID:
			// The same relationship with a new token (secret rotation, or
			// re-establishing after termination): keep the local ID.
			id = existing.ID
		}
	}
	if err := checkTokenTrustDomain(st, tok, id); err != nil {
		if used := s.alreadyPeered(st, tok); used != nil {
			return used // the token was used here: say that first
		}
		return err
	}

	secret, err := s.exchangeSecret(ctx, tok)
	if errors.Is(err, ErrTokenUsed) {
		if used := s.alreadyPeered(st, tok); used != nil {
			return used
		}
	}
	if err != nil {
		return err
	}

	p := &state.Peering{
		ID:                    id,
		Name:                  req.PeerName,
		Meta:                  maps.Clone(req.Meta),
		State:                 state.PeeringEstablishing,
		ShouldDial:            true,
		PeerID:                tok.PeerID,
		PeerCAPems:            slices.Clone(tok.CA),
		PeerServerName:        tok.ServerName,
		PeerServerAddresses:   slices.Clone(tok.ServerAddresses),
		ManualServerAddresses: slices.Clone(tok.ManualServerAddresses),
		PeerTrustDomain:       tok.TrustDomain,
		Remote:                state.PeeringRemote{Partition: tok.Remote.Partition, Datacenter: tok.Remote.Datacenter},
	}
	if _, err := s.cfg.Cluster.Apply(ctx, &catalog.Command{Type: catalog.CmdPeeringWrite, Peering: &state.PeeringWriteRequest{
		Peering: p, Secrets: &state.PeeringSecrets{PeeringID: id, DialerStreamSecret: secret},
	}}); err != nil {
		return fmt.Errorf("establish peering %q: store peering: %w", req.PeerName, err)
	}
	s.log.Info("established peering", "peer", req.PeerName, "peering_id", id, "peer_id", tok.PeerID, "remote_dc", tok.Remote.Datacenter)
	return nil
}

// alreadyPeered returns ErrTokenUsed saying "already peered" when this
// cluster already dials the peering tok was made for (the usual reason a
// token is refused as used: it was used here), or nil.
func (s *Server) alreadyPeered(st *state.Store, tok *Token) error {
	_, rows, err := st.Peerings(nil)
	if err != nil {
		return nil // the acceptor's refusal stands on its own
	}
	for _, p := range rows {
		if !p.ShouldDial || p.PeerID != tok.PeerID || p.State == state.PeeringDeleting || p.State == state.PeeringTerminated {
			continue
		}
		state := s.tracker.get(p.ID).State(p.State, s.cfg.Now(), s.cfg.HeartbeatTimeout)
		return &wrapped{
			msg: fmt.Sprintf("already peered: peering %q is %s with the cluster that made this token, which was used to establish it; "+
				"a token works once: nothing to do, or generate a new peering token to establish again", p.Name, state),
			err: ErrTokenUsed,
		}
	}
	return nil
}

// exchangeSecret trades the token's establishment secret for a stream
// secret with the acceptor, trying the manual addresses first, then the
// others, each with its own timeout.
func (s *Server) exchangeSecret(ctx context.Context, tok *Token) (string, error) {
	tlsCfg, err := s.peerTLSConfig(tok.CA, tok.ServerName)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	addrs := slices.Clone(tok.ManualServerAddresses)
	for _, a := range tok.ServerAddresses {
		if !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	var failures []string
	for _, addr := range addrs {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		secret, err := exchangeWith(ctx, addr, tlsCfg, tok)
		if err == nil {
			return secret, nil
		}
		switch status.Code(err) {
		case codes.PermissionDenied, codes.NotFound:
			// The acceptor's message ends with the same advice as ours:
			// give it once.
			const fix = ": generate a new peering token"
			answer := strings.TrimSuffix(status.Convert(err).Message(), fix)
			sentinel := ErrTokenUsed
			if strings.Contains(answer, "expired") {
				sentinel = ErrTokenExpired // by the acceptor's clock
			}
			return "", &wrapped{
				msg: fmt.Sprintf("%s (the acceptor at %s answered: %s)%s", strings.TrimSuffix(sentinel.Error(), fix), addr, answer, fix),
				err: sentinel,
			}
		case codes.InvalidArgument:
			return "", &wrapped{
				msg: fmt.Sprintf("%s: the acceptor at %s refused it: %s", ErrInvalidToken, addr, status.Convert(err).Message()),
				err: ErrInvalidToken,
			}
		}
		s.log.Debug("secret exchange failed", "addr", addr, "err", err)
		failures = append(failures, fmt.Sprintf("%s: %s", addr, grpcMessage(err)))
	}
	return "", &wrapped{
		msg: fmt.Sprintf("%s: tried %s: %s", ErrPeerUnreachable, strings.Join(addrs, ", "), strings.Join(failures, "; ")),
		err: ErrPeerUnreachable,
	}
}

// exchangeWith calls ExchangeSecret on one acceptor address.
func exchangeWith(ctx context.Context, addr string, tlsCfg *tls.Config, tok *Token) (string, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, exchangeTimeout)
	defer cancel()
	resp, err := pbpeerstream.NewPeerStreamServiceClient(conn).ExchangeSecret(ctx, &pbpeerstream.ExchangeSecretRequest{
		PeerId: tok.PeerID, EstablishmentSecret: tok.EstablishmentSecret,
	})
	if err != nil {
		return "", err
	}
	if resp.GetStreamSecret() == "" {
		return "", errors.New("the acceptor answered without a stream secret")
	}
	return resp.GetStreamSecret(), nil
}

// grpcMessage is the message of a gRPC error, or the error's text.
func grpcMessage(err error) string {
	if st, ok := status.FromError(err); ok {
		return st.Code().String() + ": " + st.Message()
	}
	return err.Error()
}

// ExchangeSecret trades the token's establishment secret for a stream
// secret. A wrong secret costs no raft write: it is compared (in constant
// time) against the store first, and only a match is written, where the
// state store compares again to close the race with a newer token.
// Attempts are rate-limited per peering ID. Apply forwards the write to
// the leader, so any server answers.
func (ss *streamServer) ExchangeSecret(ctx context.Context, req *pbpeerstream.ExchangeSecretRequest) (*pbpeerstream.ExchangeSecretResponse, error) {
	s := ss.s
	st, err := s.requireServer()
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if req.GetPeerId() == "" || req.GetEstablishmentSecret() == "" {
		return nil, s.refuseSecret(ctx, callExchange, reasonBadRequest, codes.InvalidArgument, "exchange secret: peer_id and establishment_secret are required")
	}
	// The token was written through the leader; a follower serving this
	// call may not have applied it yet, so an unknown ID is given a moment
	// to arrive before it is refused.
	var p *state.Peering
	for wait := time.Now().Add(2 * time.Second); ; {
		if _, p, err = st.PeeringByID(nil, req.GetPeerId()); err != nil {
			return nil, status.Errorf(codes.Internal, "exchange secret: %v", err)
		}
		if p != nil || time.Now().After(wait) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	if p == nil {
		return nil, s.refuseSecret(ctx, callExchange, reasonUnknownPeering, codes.NotFound,
			fmt.Sprintf("exchange secret: no peering with ID %s here: generate a new peering token", shortID(req.GetPeerId())))
	}
	if !s.attempts.allow(callExchange + "/" + p.ID) {
		return nil, s.refuseSecret(ctx, callExchange, reasonRateLimited, codes.ResourceExhausted,
			"exchange secret: too many attempts for this peering: wait a few seconds and try again", "peer", p.Name)
	}
	if p.ShouldDial {
		return nil, status.Error(codes.InvalidArgument, "exchange secret: wrong end of peering: this cluster dials that peering")
	}
	if p.State == state.PeeringDeleting || p.State == state.PeeringTerminated {
		return nil, status.Errorf(codes.PermissionDenied, "exchange secret: peering %q is %s: generate a new peering token", p.Name, strings.ToLower(p.State))
	}
	now := s.cfg.Now()
	sec, err := st.PeeringSecrets(p.ID)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "exchange secret: read secrets: %v", err)
	}
	if sec == nil || !state.SecretMatches(sec.EstablishmentSecret, req.GetEstablishmentSecret()) {
		return nil, s.refuseSecret(ctx, callExchange, reasonInvalidSecret, codes.PermissionDenied,
			"invalid peering establishment secret: generate a new peering token", "peer", p.Name)
	}
	if sec.EstablishmentExpiresAt != 0 && now.UnixNano() > sec.EstablishmentExpiresAt {
		return nil, s.refuseSecret(ctx, callExchange, reasonExpired, codes.PermissionDenied,
			"peering token expired: generate a new peering token", "peer", p.Name)
	}
	td, err := s.trustDomain()
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "exchange secret: %v", err)
	}
	bound, err := exchangeIdentity(peerCertificates(ctx), td.Name())
	if err != nil {
		return nil, s.refuseSecret(ctx, callExchange, reasonIdentity, codes.InvalidArgument,
			fmt.Sprintf("exchange secret: client certificate refused: %v", err), "peer", p.Name)
	}
	secret := uuid.NewString()
	_, err = s.apply(ctx, &catalog.Command{Type: catalog.CmdPeeringSecrets, PeeringSecrets: &state.PeeringSecretsRequest{
		Op: state.SecretsExchange, PeeringID: p.ID, Presented: req.GetEstablishmentSecret(), New: secret, Now: now.UnixNano(), Identity: bound,
	}})
	if err != nil {
		if isInvalidSecret(err) {
			// A newer token (or another exchange) won the race.
			msg := "invalid peering establishment secret: generate a new peering token"
			if strings.Contains(err.Error(), "expired") {
				msg = "peering token expired: generate a new peering token"
			}
			return nil, s.refuseSecret(ctx, callExchange, reasonInvalidSecret, codes.PermissionDenied, msg, "peer", p.Name)
		}
		return nil, status.Errorf(codes.Unavailable, "exchange secret: %v", err)
	}
	if bound == nil {
		s.log.Warn("peering stream secret issued unbound: the dialer presented no client certificate, so the secret alone opens the stream", "peer", p.Name)
	} else {
		s.log.Info("peering stream secret issued, bound to the dialer's certificate", "peer", p.Name, "trust_domain", bound.TrustDomain)
	}
	return &pbpeerstream.ExchangeSecretResponse{StreamSecret: secret}, nil
}

// isInvalidSecret reports whether a write failed on a secret mismatch. An
// ApplyError carries only the state store's message.
func isInvalidSecret(err error) bool {
	if errors.Is(err, state.ErrInvalidSecret) {
		return true
	}
	var ae *catalog.ApplyError
	return errors.As(err, &ae) && strings.Contains(ae.Msg, state.ErrInvalidSecret.Error())
}

// checkStreamSecret accepts the active stream secret, or the pending one,
// which it promotes (through raft) to active, if the stream's client
// certificates match the identity the secret is bound to. Refusals cost no
// raft write, and a peering's refusals are rate-limited.
func (s *Server) checkStreamSecret(ctx context.Context, p *state.Peering, presented string) error {
	key := callStream + "/" + p.ID
	if s.attempts.exhausted(key) {
		return s.refuseSecret(ctx, callStream, reasonRateLimited, codes.ResourceExhausted,
			"stream: too many refused attempts for this peering: wait a few seconds and try again", "peer", p.Name)
	}
	st := s.cfg.Cluster.Store()
	sec, err := st.PeeringSecrets(p.ID)
	if err != nil {
		return status.Errorf(codes.Internal, "stream: read secrets: %v", err)
	}
	var bound *state.StreamIdentity
	pending := false
	switch {
	case sec != nil && state.SecretMatches(sec.ActiveStreamSecret, presented):
		bound = sec.ActiveIdentity
	case sec != nil && state.SecretMatches(sec.PendingStreamSecret, presented):
		bound, pending = sec.PendingIdentity, true
	default:
		s.attempts.allow(key)
		return s.refuseSecret(ctx, callStream, reasonInvalidSecret, codes.PermissionDenied,
			"stream: invalid stream secret: establish the peering again with a new peering token", "peer", p.Name)
	}
	if bound != nil {
		_, bundle, err := st.TrustBundle(nil, p.Name)
		if err != nil {
			return status.Errorf(codes.Internal, "stream: read the peer's trust bundle: %v", err)
		}
		if err := verifyBinding(bound, peerCertificates(ctx), bundle); err != nil {
			s.attempts.allow(key)
			return s.refuseSecret(ctx, callStream, reasonIdentity, codes.PermissionDenied,
				fmt.Sprintf("stream: the stream secret is bound to the peer's TLS identity (trust domain %s), which this connection does not have: %v", bound.TrustDomain, err),
				"peer", p.Name)
		}
	}
	if !pending {
		return nil
	}
	_, err = s.apply(ctx, &catalog.Command{Type: catalog.CmdPeeringSecrets, PeeringSecrets: &state.PeeringSecretsRequest{
		Op: state.SecretsPromote, PeeringID: p.ID, Presented: presented, Now: s.cfg.Now().UnixNano(),
	}})
	if err != nil {
		if isInvalidSecret(err) {
			return s.refuseSecret(ctx, callStream, reasonInvalidSecret, codes.PermissionDenied,
				"stream: invalid stream secret: establish the peering again with a new peering token", "peer", p.Name)
		}
		return status.Errorf(codes.Unavailable, "stream: promote stream secret: %v", err)
	}
	if sec.ActiveStreamSecret != "" {
		s.metrics.rotations.WithLabelValues(p.Name, "promoted").Inc()
		s.log.Info("stream secret rotated: the dialer opened with the pending secret; the old one no longer works", "peer", p.Name)
	}
	return nil
}
