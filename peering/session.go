package peering

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-memdb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

// grpcMaxMessageBytes is the largest gRPC message either end of the stream
// accepts (Consul's 8 MiB). Resources are chunked well below it.
const grpcMaxMessageBytes = 8 << 20

// openTimeout bounds the wait for a dialer's Open.
const openTimeout = 30 * time.Second

// Stream outcomes that are not failures of the transport.
var (
	// errTerminatedByPeer ends a stream on which the peer sent Terminated.
	errTerminatedByPeer = errors.New("the peer deleted the peering (terminated)")
	// errDeletedLocally ends a stream whose peering is being deleted here,
	// after Terminated was sent.
	errDeletedLocally = errors.New("the peering is being deleted")
	// errReplaced ends a stream when a newer one opens for the peering.
	errReplaced = errors.New("replaced by a newer stream for the same peering")
	// errNotLeader ends an acceptor stream when this server stops leading.
	errNotLeader = errors.New("node is not a leader anymore")
)

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

// ExchangeSecret trades the token's establishment secret for a stream
// secret. Apply forwards the write to the leader, so any server answers.
func (ss *streamServer) ExchangeSecret(ctx context.Context, req *pbpeerstream.ExchangeSecretRequest) (*pbpeerstream.ExchangeSecretResponse, error) {
	s := ss.s
	st, err := s.requireServer()
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if req.GetPeerId() == "" || req.GetEstablishmentSecret() == "" {
		return nil, status.Error(codes.InvalidArgument, "exchange secret: peer_id and establishment_secret are required")
	}
	// The token was written through the leader; a follower serving this
	// call may not have applied it yet, so an unknown ID is given a moment
	// to arrive before it is refused.
	var p *catalog.Peering
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
		return nil, status.Errorf(codes.NotFound, "exchange secret: no peering with ID %s here: generate a new peering token", shortID(req.GetPeerId()))
	}
	if p.ShouldDial {
		return nil, status.Error(codes.InvalidArgument, "exchange secret: wrong end of peering: this cluster dials that peering")
	}
	if p.State == catalog.PeeringDeleting || p.State == catalog.PeeringTerminated {
		return nil, status.Errorf(codes.PermissionDenied, "exchange secret: peering %q is %s: generate a new peering token", p.Name, strings.ToLower(p.State))
	}
	secret := uuid.NewString()
	_, err = s.apply(ctx, &catalog.Command{Type: catalog.CmdPeeringSecrets, PeeringSecrets: &catalog.PeeringSecretsRequest{
		Op: catalog.SecretsExchange, PeeringID: p.ID, Presented: req.GetEstablishmentSecret(), New: secret, Now: s.cfg.Now().UnixNano(),
	}})
	if err != nil {
		if isInvalidSecret(err) {
			msg := "invalid peering establishment secret: generate a new peering token"
			if strings.Contains(err.Error(), "expired") {
				msg = "peering token expired: generate a new peering token"
			}
			return nil, status.Error(codes.PermissionDenied, msg)
		}
		return nil, status.Errorf(codes.Unavailable, "exchange secret: %v", err)
	}
	return &pbpeerstream.ExchangeSecretResponse{StreamSecret: secret}, nil
}

// isInvalidSecret reports whether a write failed on a secret mismatch. An
// ApplyError carries only the state store's message.
func isInvalidSecret(err error) bool {
	if errors.Is(err, catalog.ErrInvalidSecret) {
		return true
	}
	var ae *catalog.ApplyError
	return errors.As(err, &ae) && strings.Contains(ae.Msg, catalog.ErrInvalidSecret.Error())
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
	if p.State == catalog.PeeringDeleting || p.State == catalog.PeeringTerminated {
		_ = stream.Send(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Terminated{Terminated: &pbpeerstream.Terminated{}}})
		return status.Errorf(codes.Aborted, "stream: peering %q is %s", p.Name, strings.ToLower(p.State))
	}
	if err := s.checkStreamSecret(stream.Context(), p.ID, open.GetStreamSecretId()); err != nil {
		return err
	}
	if p.State == catalog.PeeringPending || p.Remote.Datacenter == "" {
		remote := open.GetRemote()
		err := s.updatePeering(stream.Context(), p.ID, func(q *catalog.Peering) bool {
			changed := false
			if q.State == catalog.PeeringPending {
				q.State, changed = catalog.PeeringActive, true
			}
			if q.Remote.Datacenter == "" && remote.GetDatacenter() != "" {
				q.Remote = catalog.PeeringRemote{Partition: remote.GetPartition(), Datacenter: remote.GetDatacenter()}
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

// checkStreamSecret accepts the active stream secret, or the pending one,
// which it promotes (through raft) to active.
func (s *Server) checkStreamSecret(ctx context.Context, peeringID, presented string) error {
	sec, err := s.cfg.Cluster.Store().PeeringSecrets(peeringID)
	if err != nil {
		return status.Errorf(codes.Internal, "stream: read secrets: %v", err)
	}
	if sec != nil && secretMatches(sec.ActiveStreamSecret, presented) {
		return nil
	}
	_, err = s.apply(ctx, &catalog.Command{Type: catalog.CmdPeeringSecrets, PeeringSecrets: &catalog.PeeringSecretsRequest{
		Op: catalog.SecretsPromote, PeeringID: peeringID, Presented: presented, Now: s.cfg.Now().UnixNano(),
	}})
	if err != nil {
		if isInvalidSecret(err) {
			return status.Error(codes.PermissionDenied, "stream: invalid stream secret: establish the peering again with a new peering token")
		}
		return status.Errorf(codes.Unavailable, "stream: promote stream secret: %v", err)
	}
	return nil
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

// updatePeering rewrites a peering row read fresh from the store when f
// reports a change. Rows being deleted are left alone: their state is the
// deletion routine's.
func (s *Server) updatePeering(ctx context.Context, id string, f func(p *catalog.Peering) bool) error {
	_, p, err := s.cfg.Cluster.Store().PeeringByID(nil, id)
	if err != nil {
		return err
	}
	if p == nil {
		return catalog.ErrPeeringNotFound
	}
	if p.State == catalog.PeeringDeleting {
		return nil
	}
	cp := *p
	if !f(&cp) {
		return nil
	}
	_, err = s.apply(ctx, &catalog.Command{Type: catalog.CmdPeeringWrite, Peering: &catalog.PeeringWriteRequest{Peering: &cp}})
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

// msgStream is either end of StreamResources.
type msgStream interface {
	Send(*pbpeerstream.ReplicationMessage) error
	Recv() (*pbpeerstream.ReplicationMessage, error)
}

// recvWithTimeout receives one message, giving up after d.
func recvWithTimeout(ctx context.Context, st msgStream, d time.Duration) (*pbpeerstream.ReplicationMessage, error) {
	type result struct {
		m   *pbpeerstream.ReplicationMessage
		err error
	}
	ch := make(chan result, 1)
	go func() {
		m, err := st.Recv()
		ch <- result{m, err}
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.m, r.err
	case <-t.C:
		return nil, fmt.Errorf("nothing received for %s", d)
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// ---- the registry of open streams ----

// streamRegistry holds the one open session per peering ID.
type streamRegistry struct {
	mu   sync.Mutex
	byID map[string]*session
}

func newStreamRegistry() *streamRegistry {
	return &streamRegistry{byID: map[string]*session{}}
}

// add makes sess the peering's stream, ending the previous one, and waits
// (a bounded time) until that one has stopped importing.
func (r *streamRegistry) add(sess *session) {
	r.mu.Lock()
	old := r.byID[sess.id]
	r.byID[sess.id] = sess
	r.mu.Unlock()
	if old != nil {
		old.cancel(errReplaced)
		select {
		case <-old.finished:
		case <-time.After(10 * time.Second):
		}
	}
}

// remove forgets sess if it is still the peering's stream; it reports
// whether it was.
func (r *streamRegistry) remove(sess *session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID[sess.id] == sess {
		delete(r.byID, sess.id)
		return true
	}
	return false
}

func (r *streamRegistry) get(id string) *session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byID[id]
}

// wait waits until the peering has no open stream, or d passes.
func (r *streamRegistry) wait(ctx context.Context, id string, d time.Duration) {
	sess := r.get(id)
	if sess == nil {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-sess.finished:
	case <-t.C:
	case <-ctx.Done():
	}
}

// ---- the session: one open stream, either end ----

// session runs one open replication stream. Both ends run the same loop:
// each subscribes to the four resource types it imports and serves the
// other's subscriptions. Goroutines: the caller's (receive loop), a writer
// (the only one calling Send), the exporter, a heartbeat ticker and a
// watch on the peering row.
type session struct {
	srv    *Server
	id     string // this side's peering ID
	name   string // this side's name for the peer
	peerDC string // the peer's datacenter, given to the nodes imported
	dialer bool
	stream msgStream
	ctx    context.Context
	cancel context.CancelCauseFunc
	out    *outbox
	exp    *exporter
	imp    *importer
	nonce  atomic.Uint64
	// queued is the size of the messages received but not yet handled;
	// recvRoom is signalled when it shrinks.
	queued   atomic.Int64
	recvRoom chan struct{}
	// lastRecv is when anything last arrived (unix nanoseconds).
	lastRecv atomic.Int64
	// terminating is set once Terminated is queued: however the stream
	// then ends, it ended because the peering is deleted here.
	terminating atomic.Bool
	// finished is closed once every goroutine that writes to the catalog
	// has stopped.
	finished chan struct{}
}

func (s *Server) newSession(ctx context.Context, cancel context.CancelCauseFunc, stream msgStream, p *catalog.Peering, dialer bool) *session {
	sess := &session{
		srv: s, id: p.ID, name: p.Name, peerDC: p.Remote.Datacenter, dialer: dialer, stream: stream,
		ctx: ctx, cancel: cancel, out: newOutbox(), finished: make(chan struct{}), recvRoom: make(chan struct{}, 1),
	}
	sess.exp = newExporter(sess)
	sess.imp = newImporter(sess)
	return sess
}

func (ss *session) log() *slog.Logger { return ss.srv.log.With("peer", ss.name, "peering_id", ss.id) }

// nextNonce returns a nonce unique on this stream.
func (ss *session) nextNonce() string { return fmt.Sprintf("%08x", ss.nonce.Add(1)) }

// subscriptions are the types this end imports: the dialer also takes the
// acceptor's server addresses.
func (ss *session) subscriptions() []string {
	urls := []string{pbpeerstream.TypeURLExportedServiceList, pbpeerstream.TypeURLExportedService, pbpeerstream.TypeURLTrustBundle}
	if ss.dialer {
		urls = append(urls, pbpeerstream.TypeURLServerAddresses)
	}
	return urls
}

// run serves the stream until it ends and returns why. first, on the
// dialer, is the message already received while opening.
func (ss *session) run(first *pbpeerstream.ReplicationMessage) error {
	s := ss.srv
	before := s.tracker.get(ss.id).Reconnects
	s.tracker.connected(ss.id)
	if s.tracker.get(ss.id).Reconnects > before {
		s.metrics.reconnects.WithLabelValues(ss.name).Inc()
	}
	s.streams.add(ss)
	ss.lastRecv.Store(s.cfg.Now().UnixNano())
	ss.log().Info("peering stream open", "dialer", ss.dialer)

	for _, url := range ss.subscriptions() {
		ss.imp.subscribed(url)
		ss.out.push(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Request{Request: &pbpeerstream.Request{ResourceUrl: url}}}, true)
	}

	var wg sync.WaitGroup
	for _, f := range []func(){ss.writeLoop, ss.exp.run, ss.heartbeatLoop, ss.watchPeering} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		ss.recvLoop(first)
	}()

	<-ss.ctx.Done()
	err := context.Cause(ss.ctx)
	if ss.terminating.Load() && !errors.Is(err, errDeletedLocally) {
		ss.log().Debug("stream ended while terminating", "err", err)
		err = errDeletedLocally
	}
	wg.Wait()
	if ss.dialer {
		// The dialer's stream context is ours: Recv has returned.
		<-recvDone
	}
	go func() {
		// On the acceptor, Recv returns once the handler has returned.
		<-recvDone
		close(ss.finished)
	}()
	if ss.dialer {
		<-ss.finished
	}
	if s.streams.remove(ss) {
		var reported error
		if !errors.Is(err, errDeletedLocally) {
			reported = err
		}
		s.tracker.disconnected(ss.id, reported)
	}
	ss.log().Info("peering stream closed", "reason", err)
	return err
}

// fail ends the session with err.
func (ss *session) fail(err error) { ss.cancel(err) }

// recvQueue and recvQueueBytes bound the messages received but not yet
// handled (the byte bound is passed by one message at most).
const (
	recvQueue      = 256
	recvQueueBytes = 16 << 20
)

// received is a message, or the error that ended receiving (last).
type received struct {
	m    *pbpeerstream.ReplicationMessage
	size int
	err  error
}

// taken releases an item's share of the receive queue.
func (ss *session) taken(item received) {
	if item.size > 0 {
		ss.queued.Add(-int64(item.size))
		signal(ss.recvRoom)
	}
}

// recvLoop receives every message (a reader goroutine) and dispatches them
// in order. Messages arriving while the importer waits for raft queue up,
// so the importer can commit several of them in one write.
func (ss *session) recvLoop(first *pbpeerstream.ReplicationMessage) {
	in := make(chan received, recvQueue)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(in)
		ss.readLoop(first, in)
	}()
	ss.dispatch(in)
	<-readDone
}

// readLoop receives messages into in until the stream or session ends. The
// end of the stream (io.EOF, the peer's half-close) is queued behind the
// messages, so that what came before it (Terminated, say) is handled
// first; any other receive error ends the session at once.
func (ss *session) readLoop(first *pbpeerstream.ReplicationMessage, in chan<- received) {
	s := ss.srv
	for {
		m := first
		first = nil
		var item received
		if m == nil {
			var err error
			m, err = ss.stream.Recv()
			if err != nil && !errors.Is(err, io.EOF) {
				ss.fail(fmt.Errorf("receive: %w", err))
				return
			}
			if err != nil {
				item.err = fmt.Errorf("receive: %w", err)
			}
		}
		if ss.ctx.Err() != nil {
			return
		}
		if item.err == nil {
			item.m, item.size = m, proto.Size(m)
			ss.lastRecv.Store(s.cfg.Now().UnixNano())
			s.metrics.bytes.WithLabelValues(ss.name, "received").Add(float64(item.size))
			for ss.queued.Load() >= recvQueueBytes {
				select {
				case <-ss.recvRoom:
				case <-ss.ctx.Done():
					return
				}
			}
			ss.queued.Add(int64(item.size))
		}
		select {
		case in <- item:
		case <-ss.ctx.Done():
			return
		}
		if item.err != nil {
			return
		}
	}
}

// dispatch validates and handles the received messages in order. A run of
// queued service upserts is handed to the importer as one batch.
func (ss *session) dispatch(in <-chan received) {
	var next *received
	for {
		var item received
		if next != nil {
			item, next = *next, nil
		} else {
			var ok bool
			select {
			case item, ok = <-in:
				if !ok {
					return
				}
				ss.taken(item)
			case <-ss.ctx.Done():
				return
			}
		}
		if ss.ctx.Err() != nil {
			return
		}
		err := item.err
		switch {
		case err != nil:
		case batchable(item.m):
			next, err = ss.handleBatch(item.m, in)
		default:
			err = ss.handle(item.m)
		}
		if err != nil {
			ss.fail(err)
			return
		}
	}
}

// handleBatch imports first and the batchable messages queued behind it in
// one commit, then ACKs or NACKs each. It returns the queued item that
// ended the batch, to be handled next.
func (ss *session) handleBatch(first *pbpeerstream.ReplicationMessage, in <-chan received) (*received, error) {
	s := ss.srv
	b := ss.imp.newBatch()
	m := first
	var next *received
	for {
		s.tracker.received(ss.id)
		if !b.add(m.GetResponse(), s.cfg.Now()) {
			next = &received{m: m} // conflicts with the batch: first of the next one
			break
		}
		if b.full() {
			break
		}
		var more received
		var ok bool
		select {
		case more, ok = <-in:
			ss.taken(more)
		default:
		}
		if !ok {
			break // nothing queued (or the stream ended)
		}
		if more.err != nil || !batchable(more.m) {
			next = &more
			break
		}
		m = more.m
	}
	results := ss.imp.commitBatch(ss.ctx, b)
	if ss.ctx.Err() != nil {
		return nil, context.Cause(ss.ctx)
	}
	for _, res := range results {
		if res.err != nil {
			ss.nack(res.r, res.code, res.err.Error())
			continue
		}
		ss.out.push(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Request{Request: &pbpeerstream.Request{
			ResourceUrl: res.r.GetResourceUrl(), ResponseNonce: res.r.GetNonce(),
		}}}, true)
	}
	return next, nil
}

// handle dispatches one received message; an error ends the stream.
func (ss *session) handle(m *pbpeerstream.ReplicationMessage) error {
	s := ss.srv
	if err := m.Validate(); err != nil {
		if r := m.GetResponse(); r != nil && r.GetNonce() != "" {
			ss.nack(r, codes.InvalidArgument, err.Error())
			return nil
		}
		return status.Error(codes.InvalidArgument, err.Error())
	}
	switch p := m.GetPayload().(type) {
	case *pbpeerstream.ReplicationMessage_Heartbeat:
		s.tracker.heartbeat(ss.id)
	case *pbpeerstream.ReplicationMessage_Open:
		return status.Error(codes.InvalidArgument, "open received on an open stream")
	case *pbpeerstream.ReplicationMessage_Terminated:
		s.tracker.received(ss.id)
		ss.log().Info("the peer terminated the peering")
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ss.ctx), 10*time.Second)
		defer cancel()
		if err := s.markTerminated(ctx, ss.id); err != nil {
			return err
		}
		return errTerminatedByPeer
	case *pbpeerstream.ReplicationMessage_Request:
		s.tracker.received(ss.id)
		r := p.Request
		if r.GetResponseNonce() == "" {
			if r.GetResourceUrl() == pbpeerstream.TypeURLServerAddresses && ss.dialer {
				// Only the dialer takes server addresses; not served.
				ss.log().Debug("ignoring the acceptor's subscription to server addresses")
				return nil
			}
			ss.exp.control(ctlEvent{kind: ctlSubscribe, url: r.GetResourceUrl(), initial: r.GetInitialVersions()})
			return nil
		}
		kind := ctlACK
		if r.GetError() != nil {
			kind = ctlNACK
			s.metrics.nacks.WithLabelValues(ss.name, "received").Inc()
			ss.log().Warn("peer refused a resource", "url", r.GetResourceUrl(), "nonce", r.GetResponseNonce(), "err", r.GetError().GetMessage())
		}
		ss.exp.control(ctlEvent{kind: kind, url: r.GetResourceUrl(), nonce: r.GetResponseNonce()})
	case *pbpeerstream.ReplicationMessage_Response:
		s.tracker.received(ss.id)
		arrived := s.cfg.Now()
		code, err := ss.imp.handle(ss.ctx, p.Response, arrived)
		if ss.ctx.Err() != nil {
			return context.Cause(ss.ctx)
		}
		if err != nil {
			ss.nack(p.Response, code, err.Error())
			return nil
		}
		ss.out.push(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Request{Request: &pbpeerstream.Request{
			ResourceUrl: p.Response.GetResourceUrl(), ResponseNonce: p.Response.GetNonce(),
		}}}, true)
	}
	return nil
}

// nack refuses a response.
func (ss *session) nack(r *pbpeerstream.Response, code codes.Code, msg string) {
	ss.srv.metrics.nacks.WithLabelValues(ss.name, "sent").Inc()
	ss.log().Warn("refusing a resource from the peer", "url", r.GetResourceUrl(), "id", r.GetResourceId(), "nonce", r.GetNonce(), "err", msg)
	ss.out.push(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Request{Request: &pbpeerstream.Request{
		ResourceUrl: r.GetResourceUrl(), ResponseNonce: r.GetNonce(),
		Error: &pbpeerstream.Status{Code: int32(code), Message: msg},
	}}}, true)
}

// writeLoop is the only caller of Send.
func (ss *session) writeLoop() {
	s := ss.srv
	for {
		e, ok := ss.out.pop()
		if !ok {
			select {
			case <-ss.out.wake:
				continue
			case <-ss.ctx.Done():
				return
			}
		}
		size := proto.Size(e.msg)
		if err := ss.stream.Send(e.msg); err != nil {
			ss.fail(fmt.Errorf("send: %w", err))
			return
		}
		s.metrics.bytes.WithLabelValues(ss.name, "sent").Add(float64(size))
		s.tracker.sent(ss.id)
		if e.last {
			if cs, ok := ss.stream.(grpc.ClientStream); ok {
				_ = cs.CloseSend()
			}
		}
		if e.done != nil {
			close(e.done)
		}
		if e.last {
			return
		}
	}
}

// heartbeatLoop sends heartbeats and ends a stream the peer went silent on.
func (ss *session) heartbeatLoop() {
	s := ss.srv
	interval := s.cfg.HeartbeatInterval
	check := min(interval, s.cfg.HeartbeatTimeout/4)
	tick := time.NewTicker(check)
	defer tick.Stop()
	lastSent := time.Time{}
	for {
		now := s.cfg.Now()
		if now.Sub(lastSent) >= interval {
			ss.out.push(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Heartbeat{Heartbeat: &pbpeerstream.Heartbeat{}}}, true)
			lastSent = now
		}
		if silent := now.Sub(time.Unix(0, ss.lastRecv.Load())); silent > s.cfg.HeartbeatTimeout {
			ss.fail(fmt.Errorf("heartbeat timeout: nothing received from the peer for %s", silent.Round(time.Millisecond)))
			return
		}
		select {
		case <-ss.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// watchPeering ends the stream when the peering row goes: a row being
// deleted here first sends Terminated to the peer.
func (ss *session) watchPeering() {
	st := ss.srv.cfg.Cluster.Store()
	for {
		ws := memdb.NewWatchSet()
		_, p, err := st.PeeringByID(ws, ss.id)
		switch {
		case err != nil:
			ss.fail(fmt.Errorf("watch the peering: %w", err))
			return
		case p == nil:
			ss.fail(fmt.Errorf("peering %q: %w", ss.name, errDeletedLocally))
			return
		case p.State == catalog.PeeringDeleting:
			ss.terminate()
			return
		case p.State == catalog.PeeringTerminated:
			ss.fail(errTerminatedByPeer)
			return
		}
		if err := ws.WatchCtx(ss.ctx); err != nil {
			return
		}
	}
}

// terminate tells the peer the peering is deleted, then ends the stream.
func (ss *session) terminate() {
	ss.terminating.Store(true)
	done := make(chan struct{})
	ss.out.pushLast(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Terminated{Terminated: &pbpeerstream.Terminated{}}}, done)
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ss.ctx.Done():
		return
	}
	if ss.dialer {
		// The writer half-closed the stream after Terminated; wait for the
		// acceptor to end it, so Terminated is not lost to a reset.
		select {
		case <-t.C:
		case <-ss.ctx.Done():
			return
		}
	}
	ss.fail(errDeletedLocally)
}

// ---- the outbox ----

// outbox queues messages for the writer: control messages (ACKs,
// subscriptions, heartbeats) before bulk responses. Pushing never blocks,
// so the receive loop cannot deadlock against a peer that is not reading;
// the exporter waits for room (waitRoom) instead.
type outbox struct {
	mu        sync.Mutex
	prio      []outEntry
	bulk      []outEntry
	bulkBytes int
	wake      chan struct{}
	room      chan struct{}
}

type outEntry struct {
	msg  *pbpeerstream.ReplicationMessage
	size int
	done chan struct{}
	// last ends the writing: nothing is sent after it, and a client
	// stream is half-closed.
	last bool
}

func newOutbox() *outbox {
	return &outbox{wake: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (o *outbox) push(m *pbpeerstream.ReplicationMessage, prio bool) {
	o.mu.Lock()
	if prio {
		o.prio = append(o.prio, outEntry{msg: m})
	} else {
		e := outEntry{msg: m, size: proto.Size(m)}
		o.bulk = append(o.bulk, e)
		o.bulkBytes += e.size
	}
	o.mu.Unlock()
	signal(o.wake)
}

// pushLast queues the final message, before everything still queued;
// done is closed once it is sent.
func (o *outbox) pushLast(m *pbpeerstream.ReplicationMessage, done chan struct{}) {
	o.mu.Lock()
	o.prio = append([]outEntry{{msg: m, done: done, last: true}}, o.prio...)
	o.mu.Unlock()
	signal(o.wake)
}

func (o *outbox) pop() (outEntry, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.prio) > 0 {
		e := o.prio[0]
		o.prio[0] = outEntry{}
		o.prio = o.prio[1:]
		return e, true
	}
	if len(o.bulk) > 0 {
		e := o.bulk[0]
		o.bulk[0] = outEntry{}
		o.bulk = o.bulk[1:]
		o.bulkBytes -= e.size
		signal(o.room)
		return e, true
	}
	return outEntry{}, false
}

// waitRoom blocks while more than limit bytes of responses are queued.
func (o *outbox) waitRoom(ctx context.Context, limit int) error {
	for {
		o.mu.Lock()
		queued := o.bulkBytes
		o.mu.Unlock()
		if queued <= limit {
			return nil
		}
		select {
		case <-o.room:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// shortID quotes an ID from the peer for an error message.
func shortID(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// secretMatches compares secrets in constant time (an empty stored secret
// matches nothing).
func secretMatches(stored, presented string) bool {
	return stored != "" && subtle.ConstantTimeCompare([]byte(stored), []byte(presented)) == 1
}
