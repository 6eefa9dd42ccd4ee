package catalog

// mTLS on the two internal listeners of a server: raft's stream layer and
// the internal gRPC port (Config.TLS; see doc.go, "Trust").

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/internal/nodetls"
)

// handshakeTimeout bounds one TLS handshake on an internal listener.
const handshakeTimeout = 10 * time.Second

// tlsStreamLayer is raft's stream layer over mutual TLS: only server
// certificates of this cluster are accepted, and only a server's is
// accepted when dialing.
//
// Accept never blocks on a handshake: a goroutine accepts TCP connections
// and hands each to a goroutine of its own, which completes the handshake
// within handshakeTimeout; only connections whose handshake succeeded are
// returned by Accept. So a slow or plaintext peer costs one goroutine for
// at most handshakeTimeout and never delays raft's other peers, and raft
// never reads a byte from an unverified peer. A refused handshake is
// logged and counted (refused) before the connection is closed.
type tlsStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	server    *tls.Config
	client    *tls.Config
	refused   func(remote net.Addr, err error)

	conns  chan net.Conn
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

var _ raft.StreamLayer = (*tlsStreamLayer)(nil)

func newTLSStreamLayer(ln net.Listener, advertise net.Addr, src *nodetls.Source, refused func(net.Addr, error)) *tlsStreamLayer {
	server := src.ServerConfig(ListenerRaft, identity.RoleServer)
	// No session tickets: a resumed session skips VerifyPeerCertificate,
	// so a ticket would outlive a revoked or rotated certificate.
	server.SessionTicketsDisabled = true
	t := &tlsStreamLayer{
		ln: ln, advertise: advertise, server: server,
		client:  src.ClientConfig(ListenerRaft, identity.RoleServer),
		refused: refused,
		conns:   make(chan net.Conn),
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.wg.Add(1)
	go func() { defer t.wg.Done(); t.acceptLoop() }()
	return t
}

func (t *tlsStreamLayer) acceptLoop() {
	var delay time.Duration
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			if t.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient failure (out of file descriptors): back off as
			// net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(delay):
			case <-t.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		t.wg.Add(1)
		go func() { defer t.wg.Done(); t.handshake(conn) }()
	}
}

func (t *tlsStreamLayer) handshake(conn net.Conn) {
	tc := tls.Server(conn, t.server)
	ctx, cancel := context.WithTimeout(t.ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		if t.ctx.Err() == nil {
			t.refused(conn.RemoteAddr(), err)
		}
		_ = conn.Close()
		return
	}
	select {
	case t.conns <- tc:
	case <-t.ctx.Done():
		_ = tc.Close()
	}
}

// Accept returns the next connection whose handshake succeeded.
func (t *tlsStreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-t.conns:
		return c, nil
	case <-t.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Dial connects to a server's raft address and completes the handshake
// within timeout.
func (t *tlsStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(t.ctx, timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", string(addr))
	if err != nil {
		return nil, err
	}
	tc := tls.Client(conn, t.client)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		if t.ctx.Err() == nil {
			t.refused(conn.RemoteAddr(), err)
		}
		return nil, fmt.Errorf("raft TLS handshake with %s: %w", addr, err)
	}
	return tc, nil
}

// Close stops accepting, closes the connections still in their handshake
// and waits for their goroutines.
func (t *tlsStreamLayer) Close() error {
	var err error
	t.once.Do(func() {
		t.cancel()
		err = t.ln.Close()
		t.wg.Wait()
	})
	return err
}

func (t *tlsStreamLayer) Addr() net.Addr { return t.advertise }

// refusingCreds reports every failed server-side handshake (logged, and
// counted unless nodetls already counted a refused certificate).
type refusingCreds struct {
	credentials.TransportCredentials
	refused func(remote net.Addr, err error)
}

func (r refusingCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, info, err := r.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		r.refused(conn.RemoteAddr(), err)
	}
	return c, info, err
}

func (r refusingCreds) Clone() credentials.TransportCredentials {
	return refusingCreds{TransportCredentials: r.TransportCredentials.Clone(), refused: r.refused}
}

// GRPCServerOptions returns the options the internal gRPC server must be
// created with. With Config.TLS set: mutual TLS admitting server and client
// node certificates of this cluster (plaintext and certificate-less
// connections fail at the handshake, logged and counted), a handshake
// deadline, and interceptors that put the verified peer in every call's
// context (nodetls.PeerFrom) and refuse a call without one. Without
// Config.TLS it returns nothing: the port stays plaintext, as before.
func (c *Cluster) GRPCServerOptions() []grpc.ServerOption {
	src := c.cfg.TLS
	if src == nil {
		return nil
	}
	cfg := src.ServerConfig(ListenerGRPC, identity.RoleServer, identity.RoleClient)
	cfg.SessionTicketsDisabled = true // see newTLSStreamLayer
	creds := refusingCreds{
		TransportCredentials: credentials.NewTLS(cfg),
		refused:              func(remote net.Addr, err error) { c.handshakeRefused(ListenerGRPC, remote, err) },
	}
	return []grpc.ServerOption{
		grpc.Creds(creds),
		grpc.ConnectionTimeout(handshakeTimeout),
		grpc.ChainUnaryInterceptor(c.unaryPeer),
		grpc.ChainStreamInterceptor(c.streamPeer),
	}
}

// grpcDialCredentials is how this node dials the internal gRPC port of a
// server: mutual TLS, the other side a server of this cluster.
func grpcDialCredentials(src *nodetls.Source) credentials.TransportCredentials {
	return credentials.NewTLS(src.ClientConfig(ListenerGRPC, identity.RoleServer))
}

// verifiedPeer returns ctx with the call's verified node identity
// (nodetls.WithPeer), or an Unauthenticated status if the connection
// carries none, which the credentials make impossible: it is checked all
// the same, logged and counted.
func (c *Cluster) verifiedPeer(ctx context.Context, method string) (context.Context, error) {
	p, ok := peer.FromContext(ctx)
	var remote net.Addr
	var err error
	if ok {
		remote = p.Addr
		if info, isTLS := p.AuthInfo.(credentials.TLSInfo); isTLS {
			var a identity.Agent
			if a, err = nodetls.PeerAgent(info.State); err == nil {
				// The handshake checked revocation; a connection opened
				// before the node was revoked is checked on every call.
				if c.NodeRevoked(a, info.State.PeerCertificates[0]) {
					c.cfg.Refusals.Refused(ListenerGRPC, nodetls.ReasonRevoked)
					c.log.Warn("refused a call from a revoked node", "listener", ListenerGRPC, "method", method, "node", a.Node, "remote", addrString(remote))
					return nil, status.Errorf(codes.PermissionDenied, "%s: the certificate of node %s was revoked", method, a.Node)
				}
				return nodetls.WithPeer(ctx, a), nil
			}
		} else {
			err = fmt.Errorf("connection is not TLS (%T)", p.AuthInfo)
		}
	} else {
		err = errors.New("no peer information")
	}
	c.cfg.Refusals.Refused(ListenerGRPC, nodetls.ReasonNoCertificate)
	c.log.Warn("refused a call without a verified node identity", "listener", ListenerGRPC, "method", method, "remote", addrString(remote), "err", err)
	return nil, status.Errorf(codes.Unauthenticated, "%s: no verified node certificate on this connection: %v", method, err)
}

func (c *Cluster) unaryPeer(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := c.verifiedPeer(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (c *Cluster) streamPeer(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := c.verifiedPeer(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	// A stream (the mirror) outlives any one check: it ends within a
	// second of its node's revocation.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if a, ok := nodetls.PeerFrom(ctx); ok {
		if leaf, ok := peerLeaf(ctx); ok {
			go c.endIfRevoked(ctx, cancel, a, leaf)
		}
	}
	err = handler(srv, &peerStream{ServerStream: ss, ctx: ctx})
	if ctx.Err() != nil && ss.Context().Err() == nil && c.ctx.Err() == nil {
		return status.Errorf(codes.PermissionDenied, "%s: the certificate of this node was revoked", info.FullMethod)
	}
	return err
}

// endIfRevoked cancels a stream's context once its node is revoked.
func (c *Cluster) endIfRevoked(ctx context.Context, cancel context.CancelFunc, a identity.Agent, leaf *x509.Certificate) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if c.NodeRevoked(a, leaf) {
				c.cfg.Refusals.Refused(ListenerGRPC, nodetls.ReasonRevoked)
				c.log.Warn("ended the stream of a revoked node", "listener", ListenerGRPC, "node", a.Node)
				cancel()
				return
			}
		}
	}
}

// peerStream is a server stream whose context carries the verified peer.
type peerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *peerStream) Context() context.Context { return s.ctx }
