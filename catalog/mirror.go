package catalog

// The mirror: a read-only copy of the replicated state on client nodes.
//
// Every server serves CatalogService.Watch from its own store: the whole
// state (the snapshot record format, gzip-compressed, in chunks), then the
// whole state again whenever it changes, at most every mirrorInterval. The
// peering secrets and the CA roots' private keys are never encoded. A state
// is encoded once per change, however many clients stream it.
//
// A client node keeps a Store (its view) in sync: a goroutine streams from
// one live server and swaps every complete state into the view at once
// (state.Store.RestoreMirror), which wakes every watch set taken from the view. When the
// stream breaks, or the server leaves the gossip pool, it reconnects, to any
// live server, after an exponential backoff with jitter.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/memberlist"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/peerd/peerd/catalog/pbcatalog"
	"github.com/peerd/peerd/catalog/state"
)

// mirrorFormat names the encoding of a Watch state: gzip-compressed snapshot
// records (state.Store.WriteMirror), one JSON record a line.
const mirrorFormat = "peerd-mirror/1"

const (
	// mirrorInterval is the least time between two states sent on one
	// stream; the changes made meanwhile go out together.
	mirrorInterval = 100 * time.Millisecond
	// mirrorChunk bounds one message's data, well under gRPC's default 4 MiB
	// receive limit.
	mirrorChunk = 1 << 20
	// mirrorMaxCompressed bounds the compressed size of a received state;
	// maxSnapshotBytes bounds it once decompressed.
	mirrorMaxCompressed = 256 << 20
	// The reconnect backoff doubles from mirrorBackoffMin to mirrorBackoffMax.
	mirrorBackoffMin = 100 * time.Millisecond
	mirrorBackoffMax = 5 * time.Second
	// mirrorLivenessInterval is how often a client checks that the server it
	// streams from is still an alive member.
	mirrorLivenessInterval = 250 * time.Millisecond
)

// ---- server side ----

// mirrorSource encodes a server's store for the Watch streams. The current
// encoding is shared by every stream until the store changes.
type mirrorSource struct {
	store *state.Store
	mu    sync.Mutex
	cur   *mirrorState
}

// mirrorState is one encoded state of the store.
type mirrorState struct {
	index  uint64
	data   []byte // gzip-compressed records
	digest [sha256.Size]byte
	// stale is closed once the store has changed since data was encoded (or
	// the cluster is shutting down).
	stale chan struct{}
}

// current returns the encoding of the store as it is now, encoding it if it
// changed since the last call. ctx is the cluster's lifetime.
func (m *mirrorSource) current(ctx context.Context) (*mirrorState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur != nil {
		select {
		case <-m.cur.stale:
		default:
			return m.cur, nil
		}
	}
	if ctx.Err() != nil {
		return nil, ErrShutdown
	}
	ws := memdb.NewWatchSet()
	st, err := encodeMirror(m.store, ws)
	if err != nil {
		return nil, err
	}
	st.stale = make(chan struct{})
	go func() {
		_ = ws.WatchCtx(ctx) // returns on a change or when the cluster stops
		close(st.stale)
	}()
	m.cur = st
	return st, nil
}

// encodeMirror encodes what a client may see of store (state.WriteMirror),
// gzip-compressed, and adds to ws what fires when any of it changes.
func encodeMirror(store *state.Store, ws memdb.WatchSet) (*mirrorState, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	bw := bufio.NewWriter(zw)
	st := &mirrorState{}
	if st.index, err = store.WriteMirror(bw, ws); err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	st.data = buf.Bytes()
	st.digest = sha256.Sum256(st.data)
	return st, nil
}

// Watch implements pbcatalog.CatalogServiceServer.
func (s *catalogServer) Watch(_ *pbcatalog.WatchRequest, stream grpc.ServerStreamingServer[pbcatalog.WatchResponse]) error {
	return s.c.serveWatch(stream)
}

// serveWatch streams this server's state until the client goes away or the
// cluster stops.
func (c *Cluster) serveWatch(stream grpc.ServerStreamingServer[pbcatalog.WatchResponse]) error {
	if c.mirror == nil {
		return status.Error(codes.Unimplemented, "watch: only servers hold the state")
	}
	// A server that knows no leader has not joined a working cluster (or
	// has lost it): its store may be empty or far behind.
	if addr, _ := c.raft.LeaderWithID(); addr == "" {
		return status.Error(codes.Unavailable, "watch: "+ErrNoLeader.Error())
	}
	ctx := stream.Context()
	from := "unknown"
	if p, ok := peer.FromContext(ctx); ok {
		from = p.Addr.String()
	}
	c.log.Debug("mirror: streaming the state", "to", from)
	defer c.log.Debug("mirror: state stream closed", "to", from)
	var (
		sent     bool
		digest   [sha256.Size]byte
		lastSent time.Time
	)
	for {
		st, err := c.mirror.current(c.ctx)
		if err != nil {
			if !errors.Is(err, ErrShutdown) {
				c.log.Error("mirror: encode the state", "err", err)
			}
			return toStatus(fmt.Errorf("watch: %w", err))
		}
		// Writes that change nothing mirrored (peering secrets) leave the
		// encoding unchanged: nothing is sent.
		if !sent || st.digest != digest {
			if err := sendMirrorState(stream, st); err != nil {
				return err
			}
			sent, digest, lastSent = true, st.digest, time.Now()
		}
		select {
		case <-st.stale:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-c.ctx.Done():
			return toStatus(ErrShutdown)
		}
		// Coalesce: what changes until mirrorInterval after the last send
		// goes out with it.
		if wait := time.Until(lastSent.Add(mirrorInterval)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return status.FromContextError(ctx.Err()).Err()
			case <-c.ctx.Done():
				t.Stop()
				return toStatus(ErrShutdown)
			}
		}
	}
}

func sendMirrorState(stream grpc.ServerStreamingServer[pbcatalog.WatchResponse], st *mirrorState) error {
	for off := 0; ; off += mirrorChunk {
		end := min(off+mirrorChunk, len(st.data))
		msg := &pbcatalog.WatchResponse{Format: mirrorFormat, Index: st.index, Data: st.data[off:end], Last: end == len(st.data)}
		if err := stream.Send(msg); err != nil {
			return err
		}
		if msg.Last {
			return nil
		}
	}
}

// ---- client side ----

// mirrorView is a client's copy of the state, kept by followMirror.
type mirrorView struct {
	store   *state.Store
	synced  chan struct{} // closed once the first state is in
	once    sync.Once
	digest  [sha256.Size]byte
	source  atomic.Pointer[string] // server streamed from now; nil between streams
	streams atomic.Int64           // streams opened
}

func newMirrorView() (*mirrorView, error) {
	s, err := state.NewStore()
	if err != nil {
		return nil, fmt.Errorf("create mirror view: %w", err)
	}
	return &mirrorView{store: s, synced: make(chan struct{})}, nil
}

// apply decodes a complete state and swaps it into the view. Only
// followMirror's goroutine calls it.
func (v *mirrorView) apply(data []byte) error {
	digest := sha256.Sum256(data)
	if digest == v.digest {
		// Typically the first state after a reconnect: nothing changed, so
		// nobody is woken.
		return nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("decompress state: %w", err)
	}
	if err := v.store.RestoreMirror(&capReader{r: zr, left: maxSnapshotBytes}); err != nil {
		return err
	}
	v.digest = digest
	v.once.Do(func() { close(v.synced) })
	return nil
}

// capReader reads at most left bytes from r and fails past them (a silent
// cut could fall between two records and go unnoticed).
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		var one [1]byte
		n, err := c.r.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("state larger than %d bytes", int64(maxSnapshotBytes))
		}
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// errServerGone ends a stream from a server that is no longer an alive
// member.
var errServerGone = errors.New("server is no longer an alive member")

// followMirror keeps the view in sync until ctx ends: one stream at a time,
// reconnecting with backoff.
func (c *Cluster) followMirror(ctx context.Context) {
	b := backoff{min: mirrorBackoffMin, max: mirrorBackoffMax}
	for {
		synced, err := c.followOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if synced {
			b.reset()
		}
		wait := b.next()
		if errors.Is(err, ErrNoServers) {
			c.log.Debug("mirror: no server to stream the state from; retrying", "err", err, "in", wait)
		} else {
			c.log.Warn("mirror: state stream ended; reconnecting", "err", err, "in", wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// followOnce streams from one live server until the stream breaks, the
// server leaves, or ctx ends. synced reports whether a state was applied.
func (c *Cluster) followOnce(ctx context.Context) (synced bool, err error) {
	target, err := c.writeTarget() // on a client: any live server
	if err != nil {
		return false, fmt.Errorf("pick a server to stream the state from: %w", err)
	}
	if target.Meta.GRPCAddr == "" {
		return false, fmt.Errorf("stream the state from %s: %w: it advertises no gRPC address", target.Name, ErrNoServers)
	}
	conn, err := c.conns.get(target.Meta.GRPCAddr)
	if err != nil {
		return false, fmt.Errorf("stream the state from %s: %w", target.Name, err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel(nil)
	wg.Add(1)
	go func() { defer wg.Done(); c.watchServerAlive(ctx, cancel, target) }()

	v := c.view
	v.streams.Add(1)
	v.source.Store(&target.Name)
	defer v.source.Store(nil)
	stream, err := pbcatalog.NewCatalogServiceClient(conn).Watch(ctx, &pbcatalog.WatchRequest{})
	if err != nil {
		return false, fmt.Errorf("open state stream to %s: %w", target.Name, streamErr(ctx, err))
	}
	var buf bytes.Buffer
	for {
		msg, err := stream.Recv()
		if err != nil {
			return synced, fmt.Errorf("state stream from %s: %w", target.Name, streamErr(ctx, err))
		}
		if msg.GetFormat() != mirrorFormat {
			return synced, fmt.Errorf("state stream from %s: unknown format %q (want %s): upgrade this node", target.Name, msg.GetFormat(), mirrorFormat)
		}
		if buf.Len()+len(msg.GetData()) > mirrorMaxCompressed {
			return synced, fmt.Errorf("state stream from %s: state larger than %d bytes compressed", target.Name, mirrorMaxCompressed)
		}
		buf.Write(msg.GetData())
		if !msg.GetLast() {
			continue
		}
		if err := v.apply(buf.Bytes()); err != nil {
			return synced, fmt.Errorf("apply state at index %d from %s: %w", msg.GetIndex(), target.Name, err)
		}
		if !synced {
			c.log.Info("mirror: in sync with server", "server", target.Name, "index", msg.GetIndex())
		}
		synced = true
		buf.Reset()
	}
}

// streamErr prefers why the stream's context was cancelled (the server left)
// over the status the cancellation produced.
func streamErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// watchServerAlive cancels ctx with errServerGone once target is no longer
// an alive member of the gossip pool (failed, left, or back with another
// address).
func (c *Cluster) watchServerAlive(ctx context.Context, cancel context.CancelCauseFunc, target Member) {
	tick := time.NewTicker(mirrorLivenessInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if m, ok := c.memberByName(target.Name); !ok || m.Status != StatusAlive || m.Meta.GRPCAddr != target.Meta.GRPCAddr {
			cancel(fmt.Errorf("%s: %w", target.Name, errServerGone))
			return
		}
	}
}

// memberByName returns one member as Members would, without copying the
// whole pool.
func (c *Cluster) memberByName(name string) (Member, bool) {
	c.mu.Lock()
	n, ok := c.nodes[name]
	var cp memberlist.Node
	if ok {
		cp = *n
	}
	st := c.state[name]
	c.mu.Unlock()
	if !ok {
		return Member{}, false
	}
	return c.member(&cp, st), true
}

// backoff is an exponential backoff with jitter: each wait is drawn from
// [d/2, d), d doubling from min up to max.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	}
	d := b.cur
	b.cur = min(b.cur*2, b.max)
	if d < 2 {
		return d
	}
	return d/2 + rand.N(d/2)
}

func (b *backoff) reset() { b.cur = 0 }

// startMirror sets up the mirror: the Watch source on a server; on a
// client, the view and the goroutine keeping it in sync.
func (c *Cluster) startMirror() error {
	if c.store != nil {
		c.mirror = &mirrorSource{store: c.store}
		c.view = &mirrorView{store: c.store, synced: make(chan struct{})}
		close(c.view.synced)
		return nil
	}
	v, err := newMirrorView()
	if err != nil {
		return err
	}
	c.view = v
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.followMirror(c.ctx) }()
	return nil
}

// View returns a read-only copy of the replicated state, on every node: on a
// server the raft store itself (as Store); on a client a store kept in sync
// by streaming from a server, without the peering secrets and the CA roots'
// private keys. A client's view lags by up to mirrorInterval plus the raft
// replication lag of the server it streams from, and keeps its last state
// while it reconnects. Before its first sync it is empty (see ViewSynced).
// Never write to it.
func (c *Cluster) View() *state.Store { return c.view.store }

// ViewSynced reports whether View holds a state received from a server;
// once true it stays true. It is always true on a server.
func (c *Cluster) ViewSynced() bool {
	select {
	case <-c.view.synced:
		return true
	default:
		return false
	}
}

// ViewSyncedCh returns a channel that is closed once ViewSynced is true.
func (c *Cluster) ViewSyncedCh() <-chan struct{} { return c.view.synced }
