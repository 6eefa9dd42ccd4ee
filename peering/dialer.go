package peering

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

// dialTask is the stream goroutine of one dialer peering.
type dialTask struct {
	mu     sync.Mutex
	key    string
	cancel context.CancelFunc
	done   chan struct{}
}

func (t *dialTask) getKey() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.key
}

// setKey records a change the task made itself (a rotated stream secret),
// so the dialer loop does not restart it for that change.
func (t *dialTask) setKey(k string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.key = k
}

// dialable reports whether the dialer should hold a stream for p.
func dialable(p *state.Peering) bool {
	return p.ShouldDial && (p.State == state.PeeringEstablishing || p.State == state.PeeringActive)
}

// dialKey identifies what a stream goroutine was started for: when it
// changes (re-established with another token, other manual addresses) the
// stream is restarted. Replicated server addresses and CA roots are read
// afresh on every attempt instead.
func (s *Server) dialKey(p *state.Peering) string {
	secret := ""
	if sec, err := s.cfg.Cluster.Store().PeeringSecrets(p.ID); err == nil && sec != nil {
		secret = sec.DialerStreamSecret
	}
	return s.dialKeyWith(p, secret)
}

// dialKeyWith is dialKey with the given stream secret.
func (s *Server) dialKeyWith(p *state.Peering, secret string) string {
	return strings.Join([]string{p.ID, p.PeerID, p.PeerServerName, strings.Join(p.ManualServerAddresses, ","), secret}, "\x00")
}

// dialerLoop is the leader routine that keeps one stream goroutine per
// dialer peering that is ESTABLISHING or ACTIVE. A goroutine whose peering
// is being deleted is left to finish by itself: its stream sends
// Terminated first.
func (s *Server) dialerLoop(ctx context.Context) {
	st := s.cfg.Cluster.Store()
	tasks := map[string]*dialTask{}
	var wg sync.WaitGroup
	defer func() {
		for _, t := range tasks {
			t.cancel()
		}
		wg.Wait()
	}()
	for {
		ws := memdb.NewWatchSet()
		_, ps, err := st.Peerings(ws)
		if err != nil {
			s.log.Error("list peerings to dial", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
				continue
			}
		}
		byID := map[string]*state.Peering{}
		for _, p := range ps {
			byID[p.ID] = p
		}
		for id, t := range tasks {
			select {
			case <-t.done:
				delete(tasks, id)
				continue
			default:
			}
			p := byID[id]
			switch {
			case p != nil && p.State == state.PeeringDeleting:
				// Finishes by itself after sending Terminated.
			case p == nil || !dialable(p) || s.dialKey(p) != t.getKey():
				t.cancel()
				<-t.done
				delete(tasks, id)
			}
		}
		for _, p := range ps {
			if !dialable(p) {
				continue
			}
			if _, ok := tasks[p.ID]; ok {
				continue
			}
			tctx, cancel := context.WithCancel(ctx)
			t := &dialTask{key: s.dialKey(p), cancel: cancel, done: make(chan struct{})}
			tasks[p.ID] = t
			wg.Add(1)
			go func(id string) {
				defer wg.Done()
				defer close(t.done)
				s.dialLoop(tctx, id, t)
			}(p.ID)
		}
		if err := ws.WatchCtx(ctx); err != nil {
			return
		}
	}
}

// dialAddresses are the addresses to try, in order: the manual ones
// (-server-external-addresses), then the replicated ones.
func dialAddresses(p *state.Peering) []string {
	var out []string
	for _, a := range slices.Concat(p.ManualServerAddresses, p.PeerServerAddresses) {
		if a != "" && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// The dialer's keepalive: a ping after dialerKeepaliveTime without
// traffic (not below the acceptor's enforcement MinTime, 10 s), and the
// connection closed if it is not answered within dialerKeepaliveTimeout.
// dialerConnectTimeout bounds one TCP+TLS connect.
const (
	dialerKeepaliveTime    = 10 * time.Second
	dialerKeepaliveTimeout = 5 * time.Second
	dialerConnectTimeout   = 3 * time.Second
)

// backoff is the wait before attempt n (0-based): full jitter over an
// exponential bound between ReconnectMin and ReconnectMax.
func (s *Server) backoff(n int) time.Duration {
	bound := s.cfg.ReconnectMin
	for range min(n, 30) {
		bound *= 2
		if bound >= s.cfg.ReconnectMax {
			bound = s.cfg.ReconnectMax
			break
		}
	}
	if bound <= 0 {
		return 0
	}
	return rand.N(bound) + 1
}

// dialLoop holds the stream of one dialer peering: it connects, runs the
// session, and reconnects with backoff, rotating through the addresses,
// until ctx ends or the peering no longer wants a stream.
func (s *Server) dialLoop(ctx context.Context, id string, task *dialTask) {
	st := s.cfg.Cluster.Store()
	attempt, next := 0, 0
	redirect := ""
	for ctx.Err() == nil {
		_, p, err := st.PeeringByID(nil, id)
		if err != nil || p == nil || !dialable(p) {
			return
		}
		addrs := dialAddresses(p)
		addr := redirect
		redirect = ""
		if addr == "" {
			if len(addrs) == 0 {
				s.tracker.failed(id, errors.New("no server addresses to dial"))
				if !sleepCtx(ctx, s.cfg.ReconnectMax) {
					return
				}
				continue
			}
			addr = addrs[next%len(addrs)]
		}
		began := time.Now()
		opened, err := s.dialOnce(ctx, p, addr, task)
		if ctx.Err() != nil {
			return
		}
		if opened && time.Since(began) >= s.cfg.HeartbeatInterval {
			// Only a stream that lived resets the backoff: one that opens
			// and fails at once keeps backing off.
			attempt = 0
		}
		switch {
		case errors.Is(err, errTerminatedByPeer), errors.Is(err, errDeletedLocally):
			continue // the row says what next
		case leaderAddress(err) != "":
			redirect = leaderAddress(err)
			s.log.Debug("redirected to the peer's leader", "peer", p.Name, "leader", redirect)
		default:
			next++
		}
		if err != nil && !opened {
			s.tracker.failed(id, fmt.Errorf("stream to %s: %w", addr, err))
			s.log.Warn("peering stream failed", "peer", p.Name, "addr", addr, "err", err)
		}
		wait := s.backoff(attempt)
		if redirect != "" {
			wait = min(wait, s.cfg.ReconnectMin)
		}
		attempt++
		if !sleepCtx(ctx, wait) {
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// dialOnce opens one stream to addr and serves it until it ends. opened
// reports whether the acceptor accepted it.
func (s *Server) dialOnce(ctx context.Context, p *state.Peering, addr string, task *dialTask) (opened bool, err error) {
	sec, err := s.cfg.Cluster.Store().PeeringSecrets(p.ID)
	if err != nil {
		return false, fmt.Errorf("read stream secret: %w", err)
	}
	if sec == nil || sec.DialerStreamSecret == "" {
		return false, errors.New("no stream secret: establish the peering again")
	}
	tlsCfg, err := s.peerTLSConfig(p.PeerCAPems, p.PeerServerName)
	if err != nil {
		return false, err
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(grpcMaxMessageBytes), grpc.MaxCallRecvMsgSize(grpcMaxMessageBytes)),
		// A link that silently drops everything (a WAN partition: no RST,
		// no ICMP) leaves TCP retransmitting with a doubling timeout: after
		// the heal the stream would sit idle until the next retransmit,
		// 10 s or more. A ping unanswered for dialerKeepaliveTimeout closes
		// the connection instead, and dialLoop redials; a connect attempt
		// hanging on a lost SYN is given up after dialerConnectTimeout.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: dialerKeepaliveTime, Timeout: dialerKeepaliveTimeout}),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: grpcbackoff.DefaultConfig, MinConnectTimeout: dialerConnectTimeout}),
	)
	if err != nil {
		return false, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stream, err := pbpeerstream.NewPeerStreamServiceClient(conn).StreamResources(sctx)
	if err != nil {
		return false, fmt.Errorf("open stream: %w", err)
	}
	err = stream.Send(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Open{Open: &pbpeerstream.Open{
		PeerId: p.PeerID, StreamSecretId: sec.DialerStreamSecret,
		Remote:         &pbpeerstream.Remote{Datacenter: s.datacenter()},
		SecretRotation: true,
	}}})
	if err != nil {
		// The status comes with Recv.
		_, rerr := stream.Recv()
		if rerr != nil {
			err = rerr
		}
		return false, fmt.Errorf("send open: %w", err)
	}
	first, err := recvWithTimeout(sctx, stream, s.cfg.HeartbeatTimeout)
	if err != nil {
		return false, err
	}
	if first.GetTerminated() != nil {
		// The acceptor deleted the peering while we were away.
		if err := s.markTerminated(ctx, p.ID); err != nil {
			return false, err
		}
		return false, errTerminatedByPeer
	}
	if p.State == state.PeeringEstablishing {
		err := s.updatePeering(ctx, p.ID, func(q *state.Peering) bool {
			if q.State != state.PeeringEstablishing {
				return false
			}
			q.State = state.PeeringActive
			return true
		})
		if err != nil {
			return true, fmt.Errorf("activate peering %q: %w", p.Name, err)
		}
	}
	sess := s.newSession(sctx, cancel, stream, p, true)
	sess.task = task
	return true, sess.run(first)
}

// markTerminated records that the peer deleted the peering.
func (s *Server) markTerminated(ctx context.Context, id string) error {
	err := s.updatePeering(ctx, id, func(q *state.Peering) bool {
		if q.State == state.PeeringTerminated {
			return false
		}
		q.State = state.PeeringTerminated
		return true
	})
	if err != nil {
		return fmt.Errorf("mark the peering terminated: %w", err)
	}
	return nil
}
