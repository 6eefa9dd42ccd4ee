package peering

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

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
	// rotation (acceptor) is set when the dialer takes SecretRotation
	// messages; task (dialer) is the dial task running the stream.
	rotation bool
	task     *dialTask
	stream   msgStream
	ctx      context.Context
	cancel   context.CancelCauseFunc
	out      *outbox
	exp      *exporter
	imp      *importer
	nonce    atomic.Uint64
	// queued is the size of the messages received but not yet handled;
	// recvRoom is signalled when it shrinks.
	queued   atomic.Int64
	recvRoom chan struct{}
	// lastRecv is when anything last arrived (unix nanoseconds).
	lastRecv atomic.Int64
	// sending is when the Send in progress began (unix nanoseconds), 0
	// between sends.
	sending atomic.Int64
	// terminating is set once Terminated is queued: however the stream
	// then ends, it ended because the peering is deleted here.
	terminating atomic.Bool
	// finished is closed once every goroutine that writes to the catalog
	// has stopped.
	finished chan struct{}
	// logLimit and logSuppressed bound the refusal log lines (the receive
	// loop's only).
	logLimit      *tokenBucket
	logSuppressed int
}

// refusalLogRate and refusalLogBurst bound the log lines of refusals.
const (
	refusalLogRate  = 10
	refusalLogBurst = 50
)

func (s *Server) newSession(ctx context.Context, cancel context.CancelCauseFunc, stream msgStream, p *state.Peering, dialer bool) *session {
	sess := &session{
		srv: s, id: p.ID, name: p.Name, peerDC: p.Remote.Datacenter, dialer: dialer, stream: stream,
		ctx: ctx, cancel: cancel, out: newOutbox(), finished: make(chan struct{}), recvRoom: make(chan struct{}, 1),
		logLimit: newTokenBucket(refusalLogRate, refusalLogBurst, s.cfg.Now()),
	}
	sess.exp = newExporter(sess)
	sess.imp = newImporter(sess, p.PeerTrustDomain)
	return sess
}

func (ss *session) log() *slog.Logger { return ss.srv.log.With("peer", ss.name, "peering_id", ss.id) }

// nextNonce returns a nonce unique on this stream.
func (ss *session) nextNonce() string { return fmt.Sprintf("%08x", ss.nonce.Add(1)) }

// subscriptions are the types this end imports, the trust bundle first
// (it pins the peer's trust domain the services are checked against): the
// dialer also takes the acceptor's server addresses.
func (ss *session) subscriptions() []string {
	urls := []string{pbpeerstream.TypeURLTrustBundle, pbpeerstream.TypeURLExportedServiceList, pbpeerstream.TypeURLExportedService}
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
		var initial map[string]uint64
		if url == pbpeerstream.TypeURLExportedService {
			initial = s.held.get(ss.id) // resume: see resume.go
		}
		ss.imp.subscribed(url, initial)
		ss.out.push(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Request{Request: &pbpeerstream.Request{ResourceUrl: url, InitialVersions: initial}}}, true)
	}

	// The writer is waited for apart from the other loops: a Send blocked
	// on a peer that does not read returns only once the stream is torn
	// down, which on the acceptor happens when the handler returns.
	writeDone := make(chan struct{})
	go func() {
		defer close(writeDone)
		ss.writeLoop()
	}()
	var wg sync.WaitGroup
	loops := []func(){ss.exp.run, ss.heartbeatLoop, ss.watchPeering}
	if !ss.dialer && ss.rotation {
		loops = append(loops, ss.offerRotations)
	}
	for _, f := range loops {
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
		// The dialer's stream context is ours: Recv and Send have returned.
		<-recvDone
		<-writeDone
	}
	go func() {
		// On the acceptor, Recv (and a blocked Send) return once the
		// handler has returned.
		<-recvDone
		<-writeDone
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
		case ss.overRate(item.m):
		case batchable(item.m):
			next, err = ss.handleBatch(item.m, in)
		default:
			err = ss.handle(item.m)
		}
		if err == nil && ss.out.prioLen() > ss.srv.maxQueuedControl {
			// Each message it sends is answered: a peer that sends without
			// reading would grow the queue without bound.
			err = status.Errorf(codes.ResourceExhausted, "the peer is not reading: %d ACKs and NACKs queued for it", ss.out.prioLen())
		}
		if err != nil {
			ss.fail(err)
			return
		}
	}
}

// defaultMaxQueuedControl bounds the ACKs, NACKs and other control
// messages queued for a peer that does not read them.
const defaultMaxQueuedControl = 65536

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
		for { // the next queued message within the rate (others are NACKed)
			more, ok = received{}, false
			select {
			case more, ok = <-in:
				ss.taken(more)
			default:
			}
			if !ok || more.err != nil || !ss.overRate(more.m) {
				break
			}
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
			ss.nack(res.r, res.code, res.err)
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
			ss.nack(r, codes.InvalidArgument, err)
			return nil
		}
		return status.Error(codes.InvalidArgument, err.Error())
	}
	switch p := m.GetPayload().(type) {
	case *pbpeerstream.ReplicationMessage_Heartbeat:
		s.tracker.heartbeat(ss.id)
	case *pbpeerstream.ReplicationMessage_Open:
		return status.Error(codes.InvalidArgument, "open received on an open stream")
	case *pbpeerstream.ReplicationMessage_SecretRotation:
		s.tracker.received(ss.id)
		return ss.handleRotation(p.SecretRotation)
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
			ss.nack(p.Response, code, err)
			return nil
		}
		ss.out.push(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Request{Request: &pbpeerstream.Request{
			ResourceUrl: p.Response.GetResourceUrl(), ResponseNonce: p.Response.GetNonce(),
		}}}, true)
	}
	return nil
}

// overRate refuses (NACKs) a response beyond the message rate quota.
func (ss *session) overRate(m *pbpeerstream.ReplicationMessage) bool {
	r := m.GetResponse()
	if r == nil || ss.imp.rate.allow(ss.srv.cfg.Now()) {
		return false
	}
	ss.srv.tracker.received(ss.id)
	err := ss.imp.refuseRate(ss.ctx, r)
	if r.GetNonce() != "" {
		ss.nack(r, codes.ResourceExhausted, err)
	} else {
		ss.logRefusal("refusing a resource from the peer", append([]any{"url", r.GetResourceUrl(), "id", r.GetResourceId(), "err", err.Error()}, ss.countRefusal(err)...)...)
	}
	return true
}

// countRefusal counts a refused import (a quota, an invalid resource) by
// its quota or reason, and records it in the peering's status; it returns
// the log attributes that name it (none for other errors).
func (ss *session) countRefusal(err error) []any {
	var ref *importRefusal
	if !errors.As(err, &ref) {
		return nil
	}
	ss.srv.tracker.refused(ss.id, ref.quota, ref.reason, err.Error())
	if ref.quota != "" {
		ss.srv.metrics.quotaRefusals.WithLabelValues(ss.name, ref.quota).Inc()
		return []any{"quota", ref.quota}
	}
	ss.srv.metrics.importRefusals.WithLabelValues(ss.name, ref.reason).Inc()
	return []any{"reason", ref.reason}
}

// logRefusal logs a refusal, at most refusalLogRate a second (with a
// burst): a flooding peer cannot flood the log. The next line logged says
// how many were left out.
func (ss *session) logRefusal(msg string, attrs ...any) {
	if !ss.logLimit.allow(ss.srv.cfg.Now()) {
		ss.logSuppressed++
		return
	}
	if ss.logSuppressed > 0 {
		attrs = append(attrs, "suppressed_since_last", ss.logSuppressed)
		ss.logSuppressed = 0
	}
	ss.log().Warn(msg, attrs...)
}

// nack refuses a response; a refused import (a quota, an invalid
// resource) is also counted by its quota or reason and shown in the
// peering's status.
func (ss *session) nack(r *pbpeerstream.Response, code codes.Code, err error) {
	msg := err.Error()
	ss.srv.metrics.nacks.WithLabelValues(ss.name, "sent").Inc()
	attrs := append([]any{"url", r.GetResourceUrl(), "id", r.GetResourceId(), "nonce", r.GetNonce(), "code", code.String(), "err", msg},
		ss.countRefusal(err)...)
	ss.logRefusal("refusing a resource from the peer", attrs...)
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
		ss.sending.Store(s.cfg.Now().UnixNano())
		err := ss.stream.Send(e.msg)
		ss.sending.Store(0)
		if err != nil {
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

// errStale marks the error that ends a stream found stale.
var errStale = errors.New("stale stream")

// heartbeatLoop sends heartbeats and resets a stale stream: one the peer
// went silent on (no heartbeat, no data), or one whose current send has
// been blocked, for StaleStreamTimeout. Silence is measured from the
// application's messages, not the transport's: a live TCP connection whose
// peer stopped sending still goes stale.
func (ss *session) heartbeatLoop() {
	s := ss.srv
	interval, stale := s.cfg.HeartbeatInterval, s.cfg.StaleStreamTimeout
	check := min(interval, stale/4)
	tick := time.NewTicker(check)
	defer tick.Stop()
	lastSent := time.Time{}
	for {
		now := s.cfg.Now()
		if now.Sub(lastSent) >= interval {
			ss.out.push(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Heartbeat{Heartbeat: &pbpeerstream.Heartbeat{}}}, true)
			lastSent = now
		}
		if silent := now.Sub(time.Unix(0, ss.lastRecv.Load())); silent > stale {
			ss.reset("stale", fmt.Errorf("%w: nothing received from the peer (no heartbeat, no data) for %s, more than the %s bound",
				errStale, silent.Round(time.Millisecond), stale))
			return
		}
		if began := ss.sending.Load(); began != 0 {
			if blocked := now.Sub(time.Unix(0, began)); blocked > stale {
				ss.reset("send_stalled", fmt.Errorf("%w: a send to the peer has been blocked for %s, more than the %s bound (the peer is not reading)",
					errStale, blocked.Round(time.Millisecond), stale))
				return
			}
		}
		select {
		case <-ss.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// reset ends a stale stream, logging and counting why; the dialer then
// reconnects and resubscribes.
func (ss *session) reset(reason string, err error) {
	ss.srv.metrics.resets.WithLabelValues(ss.name, reason).Inc()
	what := "closing it so that the peer reconnects"
	if ss.dialer {
		what = "reconnecting and resubscribing"
	}
	ss.log().Warn("resetting a stale peering stream: "+what, "reason", reason, "err", err)
	ss.fail(err)
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
		case p.State == state.PeeringDeleting:
			ss.terminate()
			return
		case p.State == state.PeeringTerminated:
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

// shortID quotes an ID from the peer for an error message.
func shortID(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return fmt.Sprintf("%q", s)
}
