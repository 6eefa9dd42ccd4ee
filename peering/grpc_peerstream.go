package peering

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

// grpcMaxMessageBytes is the largest gRPC message either end of the stream
// accepts (Consul's 8 MiB). Resources are chunked well below it.
const grpcMaxMessageBytes = 8 << 20

// openTimeout bounds the wait for a dialer's Open.
const openTimeout = 30 * time.Second

// streamServer serves PeerStreamService on the peering TLS listener.
type streamServer struct {
	pbpeerstream.UnimplementedPeerStreamServiceServer
	s *Server
}

var _ pbpeerstream.PeerStreamServiceServer = (*streamServer)(nil)

// RegisterStream registers the PeerStreamService (ExchangeSecret,
// StreamResources) on g, the TLS gRPC server peers dial. Build g with
// StreamServerOptions.
func (s *Server) RegisterStream(g *grpc.Server) {
	pbpeerstream.RegisterPeerStreamServiceServer(g, &streamServer{s: s})
}

// StreamServerOptions are the options of the TLS gRPC server that serves
// RegisterStream: this server's peering certificate, the 8 MiB message
// limit the dialer also uses, and a keepalive policy that tolerates the
// dialers' pings.
func (s *Server) StreamServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.Creds(credentials.NewTLS(s.ServerTLSConfig())),
		grpc.MaxRecvMsgSize(grpcMaxMessageBytes),
		grpc.MaxSendMsgSize(grpcMaxMessageBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
}

// StreamResources is the acceptor's end of the replication stream.
func (ss *streamServer) StreamResources(stream pbpeerstream.PeerStreamService_StreamResourcesServer) error {
	s := ss.s
	first, err := recvWithTimeout(stream.Context(), stream, min(s.cfg.HeartbeatTimeout, openTimeout))
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "stream: waiting for open: %v", err)
	}
	open := first.GetOpen()
	if open == nil {
		return status.Error(codes.InvalidArgument, "stream: the first message must be open")
	}
	if err := first.Validate(); err != nil {
		return status.Error(codes.InvalidArgument, "stream: "+err.Error())
	}
	lctx := s.leadership()
	if lctx == nil {
		return s.notLeaderError()
	}
	st := s.cfg.Cluster.Store()
	_, p, err := st.PeeringByID(nil, open.GetPeerId())
	if err != nil {
		return status.Errorf(codes.Internal, "stream: %v", err)
	}
	if p == nil {
		return status.Errorf(codes.NotFound, "stream: no peering with ID %s here", shortID(open.GetPeerId()))
	}
	if p.ShouldDial {
		return status.Error(codes.InvalidArgument, "stream: wrong end of peering is being dialed")
	}
	if p.State == state.PeeringDeleting || p.State == state.PeeringTerminated {
		_ = stream.Send(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Terminated{Terminated: &pbpeerstream.Terminated{}}})
		return status.Errorf(codes.Aborted, "stream: peering %q is %s", p.Name, strings.ToLower(p.State))
	}
	if err := s.checkStreamSecret(stream.Context(), p, open.GetStreamSecretId()); err != nil {
		return err
	}
	if p.State == state.PeeringPending || p.Remote.Datacenter == "" {
		remote := open.GetRemote()
		err := s.updatePeering(stream.Context(), p.ID, func(q *state.Peering) bool {
			changed := false
			if q.State == state.PeeringPending {
				q.State, changed = state.PeeringActive, true
			}
			if q.Remote.Datacenter == "" && remote.GetDatacenter() != "" {
				q.Remote = state.PeeringRemote{Partition: remote.GetPartition(), Datacenter: remote.GetDatacenter()}
				changed = true
			}
			return changed
		})
		if err != nil {
			return status.Errorf(codes.Unavailable, "stream: activate peering %q: %v", p.Name, err)
		}
	}
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	stop := context.AfterFunc(lctx, func() { cancel(errNotLeader) })
	defer stop()
	sess := s.newSession(ctx, cancel, stream, p, false)
	sess.rotation = open.GetSecretRotation()
	if sess.peerDC == "" {
		sess.peerDC = open.GetRemote().GetDatacenter() // stored just above
	}
	err = sess.run(nil)
	switch {
	case err == nil, errors.Is(err, errTerminatedByPeer), errors.Is(err, errDeletedLocally):
		return nil
	case errors.Is(err, errNotLeader):
		return s.notLeaderError()
	case errors.Is(err, errReplaced):
		return status.Error(codes.Aborted, err.Error())
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Unavailable, err.Error())
}

// notLeaderError is FailedPrecondition with the leader's TLS gRPC address
// as a LeaderAddress detail, when known.
func (s *Server) notLeaderError() error {
	st := status.New(codes.FailedPrecondition, errNotLeader.Error())
	if m, ok := s.cfg.Cluster.LeaderMember(); ok && m.Meta.GRPCTLSAddr != "" {
		if d, err := st.WithDetails(&pbpeerstream.LeaderAddress{Address: m.Meta.GRPCTLSAddr}); err == nil {
			st = d
		}
	}
	return st.Err()
}

// leaderAddress extracts the LeaderAddress detail of an error, if any.
func leaderAddress(err error) string {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return ""
	}
	for _, d := range st.Details() {
		if la, ok := d.(*pbpeerstream.LeaderAddress); ok {
			return la.GetAddress()
		}
	}
	return ""
}
